package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README's set-up section has exactly its two commands, and its next step — putting
// gatehouse on PATH with `go install ./cmd/gatehouse` — works: the installed command runs.
func TestREADMENextStepInstallsTheCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the binary")
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	setup, _, _ := strings.Cut(readme[strings.Index(readme, "## Set up"):], "\n## A minimal")
	setup, _, _ = strings.Cut(setup, "\n## Next")
	cmds := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(setup, -1)
	if len(cmds) != 2 || strings.TrimSpace(cmds[0][1]) != "go run ./cmd/gatehouse demo" || strings.TrimSpace(cmds[1][1]) != "go test -race ./..." {
		t.Fatalf("the set-up section's commands changed: %q", cmds)
	}
	if !strings.Contains(readme, "```sh\ngo install ./cmd/gatehouse\n```") {
		t.Fatal("the README does not say how to put gatehouse on PATH")
	}
	gobin := t.TempDir()
	install := exec.Command("go", "install", "./cmd/gatehouse")
	install.Dir = "../.."
	install.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install ./cmd/gatehouse: %v\n%s", err, out)
	}
	out, _ := exec.Command(filepath.Join(gobin, "gatehouse"), "check", "-c", "../../examples/bad.yaml").CombinedOutput()
	if !strings.Contains(string(out), "bad.yaml:") {
		t.Fatalf("the installed gatehouse did not check a file:\n%s", out)
	}
}
