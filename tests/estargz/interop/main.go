// estargz_interop drives the reference eStargz implementation (Debian's
// github.com/containerd/stargz-snapshotter/estargz) for accel's interop
// tests:
//
//	estargz_interop build IN.tar OUT.blob CHUNK_SIZE [PRIORITIZED...]
//	    converts a tar with the reference builder; prints "toc DIGEST" and
//	    "diffid DIGEST".
//	estargz_interop check BLOB TOC_DIGEST
//	    opens a blob with the reference reader, verifies the TOC digest and
//	    every chunk digest, and prints one line per entry:
//	    "TYPE PATH SIZE SHA256" (SHA256 of the content for regular files,
//	    "-" otherwise), sorted by path, then "landmark NAME" lines.
package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func build(in, out string, chunkSize int, prioritized []string) {
	f, err := os.Open(in)
	if err != nil {
		fail("open %s: %v", in, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		fail("stat %s: %v", in, err)
	}
	opts := []estargz.Option{estargz.WithChunkSize(chunkSize)}
	if len(prioritized) > 0 {
		opts = append(opts, estargz.WithPrioritizedFiles(prioritized))
	}
	blob, err := estargz.Build(io.NewSectionReader(f, 0, st.Size()), opts...)
	if err != nil {
		fail("build: %v", err)
	}
	defer blob.Close()
	o, err := os.Create(out)
	if err != nil {
		fail("create %s: %v", out, err)
	}
	if _, err := io.Copy(o, blob); err != nil {
		fail("write %s: %v", out, err)
	}
	if err := o.Close(); err != nil {
		fail("close %s: %v", out, err)
	}
	fmt.Printf("toc %s\ndiffid %s\n", blob.TOCDigest(), blob.DiffID())
}

func check(path, tocDigest string) {
	f, err := os.Open(path)
	if err != nil {
		fail("open %s: %v", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		fail("stat %s: %v", path, err)
	}
	r, err := estargz.Open(io.NewSectionReader(f, 0, st.Size()))
	if err != nil {
		fail("open eStargz: %v", err)
	}
	want, err := digest.Parse(tocDigest)
	if err != nil {
		fail("parse digest: %v", err)
	}
	verifiers, err := r.VerifyTOC(want)
	if err != nil {
		fail("verify TOC: %v", err)
	}
	var lines []string
	var walk func(dir string, e *estargz.TOCEntry)
	walk = func(name string, e *estargz.TOCEntry) {
		sum := "-"
		size := int64(0)
		if e.Type == "reg" {
			size = e.Size
			sr, err := r.OpenFile(name)
			if err != nil {
				fail("open file %s: %v", name, err)
			}
			data, err := io.ReadAll(io.NewSectionReader(sr, 0, e.Size))
			if err != nil {
				fail("read file %s: %v", name, err)
			}
			sum = fmt.Sprintf("%x", sha256.Sum256(data))
			// Every chunk against its digest, through the reference verifier.
			for off := int64(0); off < e.Size; {
				ce, ok := r.ChunkEntryForOffset(name, off)
				if !ok {
					fail("no chunk of %s at %d", name, off)
				}
				v, err := verifiers.Verifier(ce)
				if err != nil {
					fail("verifier of %s at %d: %v", name, off, err)
				}
				if _, err := io.Copy(v, bytes.NewReader(data[ce.ChunkOffset:ce.ChunkOffset+ce.ChunkSize])); err != nil {
					fail("hash chunk: %v", err)
				}
				if !v.Verified() {
					fail("chunk of %s at %d does not match its digest", name, off)
				}
				off = ce.ChunkOffset + ce.ChunkSize
			}
		}
		if name != "" {
			lines = append(lines, fmt.Sprintf("%s %s %d %s", e.Type, name, size, sum))
		}
		e.ForeachChild(func(base string, child *estargz.TOCEntry) bool {
			p := base
			if name != "" {
				p = name + "/" + base
			}
			walk(p, child)
			return true
		})
	}
	root, ok := r.Lookup("")
	if !ok {
		fail("no root")
	}
	walk("", root)
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	for _, l := range []string{estargz.PrefetchLandmark, estargz.NoPrefetchLandmark} {
		if _, ok := r.Lookup(l); ok {
			fmt.Printf("landmark %s\n", l)
		}
	}
}

func main() {
	if len(os.Args) >= 5 && os.Args[1] == "build" {
		n, err := strconv.Atoi(os.Args[4])
		if err != nil {
			fail("chunk size: %v", err)
		}
		build(os.Args[2], os.Args[3], n, os.Args[5:])
		return
	}
	if len(os.Args) == 4 && os.Args[1] == "check" {
		check(os.Args[2], os.Args[3])
		return
	}
	fail("usage: estargz_interop build IN.tar OUT.blob CHUNK_SIZE [PRIORITIZED...] | check BLOB TOC_DIGEST")
}
