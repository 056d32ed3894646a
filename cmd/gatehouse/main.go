// Command gatehouse is the Backend-for-Frontend security gateway. This file
// only parses the command line and wires packages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `gatehouse — a Backend-for-Frontend security gateway

Usage:
  gatehouse serve -c FILE           run the gateway
  gatehouse check -c FILE [--online] validate a configuration (--online: also reach the IdP and the store)
  gatehouse demo [--data DIR]       run a self-contained demo (dev IdP, demo APIs, SPA) on loopback
  gatehouse audit verify FILE       verify a hash-chained audit log (and its rotated predecessors)
  gatehouse version                 print the version, commit and build date

Documentation: docs/ in the source tree.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks a command-line mistake (exit 2).
var errUsage = errors.New("usage")

// run executes one command and returns the process exit code: 0 success,
// 1 a failure the command reports (bad config, broken audit log), 2 usage,
// 3 serve stopped but audit records could not be written (disk full).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stdout, stderr)
	case "check":
		err = cmdCheck(ctx, args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "audit":
		err = cmdAudit(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, currentBuild())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gatehouse: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errAuditLost):
		return 3 // already logged
	case errors.Is(err, errReported):
		return 1
	default:
		fmt.Fprintln(stderr, "gatehouse:", err)
		return 1
	}
}

// errReported means the command already printed what went wrong.
var errReported = errors.New("reported")

// newFlags returns a FlagSet that prints its usage to stderr and returns
// errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gatehouse "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	return nil
}
