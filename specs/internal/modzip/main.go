// Command modzip publishes one commit of the pyvisor module into a file-system module
// proxy, as the Go module proxy would serve it: the module zip built from git (what
// `go get` really downloads, so files a module zip leaves out are left out here too),
// its go.mod and info. .ci/consumer then adopts pyvisor from that proxy with no replace.
//
//	go run ./internal/modzip -repo .. -rev HEAD -version v0.0.0-... -proxy DIR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

const modulePath = "github.com/pyvisor/pyvisor"

func main() {
	repo := flag.String("repo", "..", "the git checkout")
	rev := flag.String("rev", "HEAD", "the commit to publish")
	version := flag.String("version", "", "the version to publish it as (required)")
	proxy := flag.String("proxy", "", "the proxy directory (required)")
	flag.Parse()
	if *version == "" || *proxy == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := publish(*repo, *rev, *version, *proxy); err != nil {
		fmt.Fprintln(os.Stderr, "modzip:", err)
		os.Exit(1)
	}
}

func publish(repo, rev, version, proxy string) error {
	root, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	dir := filepath.Join(proxy, modulePath, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	m := module.Version{Path: modulePath, Version: version}
	z, err := os.Create(filepath.Join(dir, version+".zip"))
	if err != nil {
		return err
	}
	if err := zip.CreateFromVCS(z, m, root, rev, ""); err != nil {
		z.Close()
		return fmt.Errorf("module zip of %s: %w", rev, err)
	}
	if err := z.Close(); err != nil {
		return err
	}
	gomod, err := exec.Command("git", "-C", root, "show", rev+":go.mod").Output()
	if err != nil {
		return fmt.Errorf("go.mod of %s: %w", rev, err)
	}
	info, _ := json.Marshal(map[string]any{"Version": version, "Time": time.Now().UTC().Format(time.RFC3339)})
	for name, data := range map[string][]byte{version + ".mod": gomod, version + ".info": info, "list": []byte(version + "\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Println("published", strings.Join([]string{modulePath, version}, "@"), "to", proxy)
	return nil
}
