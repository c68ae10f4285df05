// cri_client: a minimal Kubernetes CRI (runtime.v1) client for end-to-end
// tests, standing in for kubelet/crictl (not installed on test machines).
//
//   cri_client [--address unix:///run/containerd/containerd.sock]
//              [--log-dir DIR] [--timeout SECONDS] [--user USER:PASS] pull IMAGE
//   cri_client [...] run IMAGE CMD [ARGS...]
//
// pull: ImageService.PullImage; prints the image reference. --user fills
// the request's AuthConfig username and password, as kubelet does from an
// imagePullSecret.
// run: RunPodSandbox (host network, so no CNI is needed) -> CreateContainer
// (CMD as the command, stdout/stderr to a CRI log file) -> StartContainer ->
// polls ContainerStatus until the container has exited (--timeout, default
// 60 s); prints the container's stdout (stderr to stderr) from the CRI log,
// then RemoveContainer, StopPodSandbox, RemovePodSandbox; exits with the
// container's exit code. Failures of the client or of a CRI call exit 125
// with a message naming the call.

#include <grpcpp/grpcpp.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/random.h"
#include "k8s/cri/runtime_v1.grpc.pb.h"

namespace {

namespace rt = ::runtime::v1;
using Clock = std::chrono::steady_clock;

constexpr int kClientError = 125;

struct Options {
  std::string address = "unix:///run/containerd/containerd.sock";
  std::string log_dir;  // empty: a temporary directory, removed afterwards
  int timeout_s = 60;
  std::string user;  // USER:PASS for pull; empty: no AuthConfig
};

void Usage() {
  std::fprintf(stderr,
               "usage: cri_client [--address unix:///PATH] [--log-dir DIR] [--timeout SECONDS]\n"
               "                  [--user USER:PASS]\n"
               "                  pull IMAGE | run IMAGE CMD [ARGS...]\n");
}

// A context for one call: every call gets a deadline, so a wedged runtime
// fails the test instead of hanging it.
std::unique_ptr<grpc::ClientContext> Ctx(int seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

bool Check(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return true;
  std::fprintf(stderr, "cri_client: %s failed: %s (gRPC code %d)\n", what.c_str(),
               s.error_message().c_str(), static_cast<int>(s.error_code()));
  if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED)
    std::fprintf(
        stderr, "cri_client: is the CRI plugin enabled in containerd (not in disabled_plugins)?\n");
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE)
    std::fprintf(stderr, "cri_client: is containerd listening on that address?\n");
  return false;
}

int Pull(const std::shared_ptr<grpc::Channel>& ch, const std::string& image,
         const std::string& user) {
  auto images = rt::ImageService::NewStub(ch);
  rt::PullImageRequest req;
  req.mutable_image()->set_image(image);
  if (!user.empty()) {
    size_t colon = user.find(':');
    req.mutable_auth()->set_username(user.substr(0, colon));
    if (colon != std::string::npos) req.mutable_auth()->set_password(user.substr(colon + 1));
  }
  rt::PullImageResponse resp;
  auto ctx = Ctx(600);
  if (!Check(images->PullImage(ctx.get(), req, &resp), "PullImage " + image)) return kClientError;
  std::printf("%s\n", resp.image_ref().c_str());
  return 0;
}

// Prints a CRI log file ("TIMESTAMP STREAM TAG TEXT" per line; TAG P is a
// partial line continued by the next entry, F ends the line): stdout entries
// to stdout, stderr entries to stderr.
bool PrintCriLog(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cri_client: cannot read the container log %s: %s\n", path.c_str(),
                 std::strerror(errno));
    return false;
  }
  std::string line;
  while (std::getline(in, line)) {
    size_t a = line.find(' ');
    size_t b = a == std::string::npos ? a : line.find(' ', a + 1);
    size_t c = b == std::string::npos ? b : line.find(' ', b + 1);
    if (c == std::string::npos) {
      // "TIMESTAMP STREAM TAG" with empty text has no third space.
      if (b == std::string::npos) {
        std::fprintf(stderr, "cri_client: malformed CRI log line: %s\n", line.c_str());
        continue;
      }
      c = line.size();
    }
    std::string stream = line.substr(a + 1, b - a - 1);
    std::string tag = line.substr(b + 1, c - b - 1);
    std::string text = c < line.size() ? line.substr(c + 1) : "";
    FILE* out = stream == "stderr" ? stderr : stdout;
    std::fputs(text.c_str(), out);
    if (tag != "P") std::fputc('\n', out);
  }
  std::fflush(stdout);
  return true;
}

class Pod {
 public:
  Pod(const std::shared_ptr<grpc::Channel>& ch, const Options& opt)
      : runtime_(rt::RuntimeService::NewStub(ch)), opt_(opt) {}

  ~Pod() { Cleanup(); }

  int Run(const std::string& image, const std::vector<std::string>& cmd) {
    if (!MakeLogDir()) return kClientError;
    std::string name = "cri-client-" + accel::RandomHex(4);

    rt::PodSandboxConfig& sb = sandbox_config_;
    sb.mutable_metadata()->set_name(name);
    sb.mutable_metadata()->set_uid(accel::RandomHex(16));
    sb.mutable_metadata()->set_namespace_("e2e");
    // No hostname: a host-network pod shares the node's UTS namespace, where
    // runc refuses to set one.
    sb.set_log_directory(log_dir_);
    (*sb.mutable_labels())["io.accel.test"] = "cri_client";
    sb.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(
        rt::NODE);

    {
      rt::RunPodSandboxRequest req;
      *req.mutable_config() = sb;
      rt::RunPodSandboxResponse resp;
      auto ctx = Ctx(300);  // may pull the sandbox image first
      if (!Check(runtime_->RunPodSandbox(ctx.get(), req, &resp), "RunPodSandbox"))
        return kClientError;
      sandbox_id_ = resp.pod_sandbox_id();
    }
    std::string log_name = "main_0.log";
    {
      rt::CreateContainerRequest req;
      req.set_pod_sandbox_id(sandbox_id_);
      rt::ContainerConfig& c = *req.mutable_config();
      c.mutable_metadata()->set_name("main");
      c.mutable_image()->set_image(image);
      for (const auto& a : cmd) c.add_command(a);
      c.set_log_path(log_name);
      c.mutable_linux();
      *req.mutable_sandbox_config() = sb;
      rt::CreateContainerResponse resp;
      auto ctx = Ctx(300);
      if (!Check(runtime_->CreateContainer(ctx.get(), req, &resp), "CreateContainer " + image))
        return kClientError;
      container_id_ = resp.container_id();
    }
    {
      rt::StartContainerRequest req;
      req.set_container_id(container_id_);
      rt::StartContainerResponse resp;
      auto ctx = Ctx(120);
      if (!Check(runtime_->StartContainer(ctx.get(), req, &resp), "StartContainer"))
        return kClientError;
    }
    rt::ContainerStatus status;
    auto deadline = Clock::now() + std::chrono::seconds(opt_.timeout_s);
    for (;;) {
      rt::ContainerStatusRequest req;
      req.set_container_id(container_id_);
      rt::ContainerStatusResponse resp;
      auto ctx = Ctx(30);
      if (!Check(runtime_->ContainerStatus(ctx.get(), req, &resp), "ContainerStatus"))
        return kClientError;
      status = resp.status();
      if (status.state() == rt::CONTAINER_EXITED) break;
      if (Clock::now() > deadline) {
        std::fprintf(stderr, "cri_client: container %s did not exit within %d s (state %s)\n",
                     container_id_.c_str(), opt_.timeout_s,
                     rt::ContainerState_Name(status.state()).c_str());
        return kClientError;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // The runtime writes the log before it reports the exit.
    if (!PrintCriLog(log_dir_ + "/" + log_name)) return kClientError;
    if (!status.reason().empty() && status.reason() != "Completed" && status.reason() != "Error")
      std::fprintf(stderr, "cri_client: container exited: %s %s\n", status.reason().c_str(),
                   status.message().c_str());
    int code = status.exit_code();
    return Cleanup() ? code : kClientError;
  }

  // Removes what Run created; true if every call succeeded. Idempotent.
  bool Cleanup() {
    bool ok = true;
    if (!container_id_.empty()) {
      rt::RemoveContainerRequest req;
      req.set_container_id(container_id_);
      rt::RemoveContainerResponse resp;
      auto ctx = Ctx(60);
      ok &= Check(runtime_->RemoveContainer(ctx.get(), req, &resp), "RemoveContainer");
      container_id_.clear();
    }
    if (!sandbox_id_.empty()) {
      {
        rt::StopPodSandboxRequest req;
        req.set_pod_sandbox_id(sandbox_id_);
        rt::StopPodSandboxResponse resp;
        auto ctx = Ctx(60);
        ok &= Check(runtime_->StopPodSandbox(ctx.get(), req, &resp), "StopPodSandbox");
      }
      rt::RemovePodSandboxRequest req;
      req.set_pod_sandbox_id(sandbox_id_);
      rt::RemovePodSandboxResponse resp;
      auto ctx = Ctx(60);
      ok &= Check(runtime_->RemovePodSandbox(ctx.get(), req, &resp), "RemovePodSandbox");
      sandbox_id_.clear();
    }
    if (remove_log_dir_) {
      std::error_code ec;
      std::filesystem::remove_all(log_dir_, ec);
      remove_log_dir_ = false;
    }
    return ok;
  }

 private:
  bool MakeLogDir() {
    if (!opt_.log_dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(opt_.log_dir, ec);
      log_dir_ = std::filesystem::absolute(opt_.log_dir).string();
      if (ec) {
        std::fprintf(stderr, "cri_client: cannot create %s: %s\n", log_dir_.c_str(),
                     ec.message().c_str());
        return false;
      }
      // One subdirectory per pod, as kubelet does.
      char tmpl[PATH_MAX];
      std::snprintf(tmpl, sizeof tmpl, "%s/pod.XXXXXX", log_dir_.c_str());
      if (!mkdtemp(tmpl)) {
        std::fprintf(stderr, "cri_client: mkdtemp in %s: %s\n", log_dir_.c_str(),
                     std::strerror(errno));
        return false;
      }
      log_dir_ = tmpl;
      return true;
    }
    char tmpl[] = "/tmp/cri_client.XXXXXX";
    if (!mkdtemp(tmpl)) {
      std::fprintf(stderr, "cri_client: mkdtemp: %s\n", std::strerror(errno));
      return false;
    }
    log_dir_ = tmpl;
    remove_log_dir_ = true;
    return true;
  }

  std::unique_ptr<rt::RuntimeService::Stub> runtime_;
  Options opt_;
  rt::PodSandboxConfig sandbox_config_;
  std::string log_dir_;
  bool remove_log_dir_ = false;
  std::string sandbox_id_, container_id_;
};

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "cri_client: %s needs a value\n", flag);
        std::exit(kClientError);
      }
      return argv[++i];
    };
    if (a == "--address") {
      opt.address = value("--address");
    } else if (a == "--user") {
      opt.user = value("--user");
    } else if (a == "--log-dir") {
      opt.log_dir = value("--log-dir");
    } else if (a == "--timeout") {
      opt.timeout_s = std::atoi(value("--timeout").c_str());
      if (opt.timeout_s <= 0) {
        std::fprintf(stderr, "cri_client: --timeout must be a positive number of seconds\n");
        return kClientError;
      }
    } else if (a == "-h" || a == "--help") {
      Usage();
      return 0;
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "cri_client: unknown flag %s\n", a.c_str());
      Usage();
      return kClientError;
    } else {
      break;
    }
  }
  if (i >= argc) {
    Usage();
    return kClientError;
  }
  std::string cmd = argv[i++];
  if (opt.address.find("://") == std::string::npos) opt.address = "unix://" + opt.address;
  auto ch = grpc::CreateChannel(opt.address, grpc::InsecureChannelCredentials());
  if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::fprintf(stderr, "cri_client: cannot connect to %s\n", opt.address.c_str());
    return kClientError;
  }
  if (cmd == "pull") {
    if (argc - i != 1) {
      Usage();
      return kClientError;
    }
    return Pull(ch, argv[i], opt.user);
  }
  if (cmd == "run") {
    if (argc - i < 2) {
      Usage();
      return kClientError;
    }
    std::string image = argv[i++];
    std::vector<std::string> command(argv + i, argv + argc);
    Pod pod(ch, opt);
    return pod.Run(image, command);
  }
  std::fprintf(stderr, "cri_client: unknown command %s\n", cmd.c_str());
  Usage();
  return kClientError;
}
