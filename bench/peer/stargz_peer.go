// stargz-peer: a minimal daemon around containerd's stargz-snapshotter
// library, used only by bench/run_peer.sh to compare accel with its peer.
// Debian packages the library but not the upstream daemon, so this program
// builds the snapshotter through the public service package and serves
// containerd's snapshots gRPC API on a unix socket (a proxy snapshotter).
//
//	stargz-peer --root DIR --address SOCKET [--config FILE.toml]
//
// FILE.toml is the library's service.Config (the same keys as upstream's
// config.toml, e.g. no_background_fetch, noprefetch, [resolver.host."H"]).
// SIGTERM or SIGINT stops serving and unmounts every FUSE mount (Close).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/BurntSushi/toml"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/stargz-snapshotter/service"
	"google.golang.org/grpc"
)

func main() {
	root := flag.String("root", "", "state directory (snapshots, caches, FUSE mounts)")
	address := flag.String("address", "", "unix socket to serve the snapshots API on")
	configPath := flag.String("config", "", "optional TOML file with the library's service.Config")
	flag.Parse()
	if *root == "" || *address == "" {
		fmt.Fprintln(os.Stderr, "usage: stargz-peer --root DIR --address SOCKET [--config FILE]")
		os.Exit(2)
	}
	if err := run(*root, *address, *configPath); err != nil {
		fmt.Fprintln(os.Stderr, "stargz-peer:", err)
		os.Exit(1)
	}
}

func run(root, address, configPath string) error {
	// Zero values mean the library's defaults (the filesystem fills them in).
	var cfg service.Config
	if configPath != "" {
		if _, err := toml.DecodeFile(configPath, &cfg); err != nil {
			return fmt.Errorf("config %s: %w", configPath, err)
		}
	}
	if err := os.MkdirAll(root, 0700); err != nil {
		return err
	}
	ctx := context.Background()
	sn, err := service.NewStargzSnapshotterService(ctx, root, &cfg)
	if err != nil {
		return fmt.Errorf("creating the snapshotter: %w", err)
	}
	// Close unmounts all the layers' FUSE mounts (committed ones included).
	defer sn.Close()

	// Listen with mode 0600: umask while creating the socket, then chmod to be sure.
	if err := os.MkdirAll(filepath.Dir(address), 0700); err != nil {
		return err
	}
	if err := os.Remove(address); err != nil && !os.IsNotExist(err) {
		return err
	}
	old := syscall.Umask(0177)
	l, err := net.Listen("unix", address)
	syscall.Umask(old)
	if err != nil {
		return err
	}
	if err := os.Chmod(address, 0600); err != nil {
		l.Close()
		return err
	}

	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))

	// Stop on SIGTERM/SIGINT: finish in-flight RPCs, then Close (deferred).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case s := <-sigs:
		fmt.Fprintln(os.Stderr, "stargz-peer: stopping on", s)
		srv.GracefulStop()
		return nil
	case err := <-errc:
		return err
	}
}
