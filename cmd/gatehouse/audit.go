package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
)

func cmdAudit(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: gatehouse audit verify FILE")
		return errUsage
	}
	fs := newFlags("audit verify", stderr)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: gatehouse audit verify FILE   (rotated files FILE.<time> beside it are verified first)")
		return errUsage
	}
	files, err := audit.Files(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if len(files) == 0 {
		// A typo or a wrong mount must not look like a healthy, empty log.
		return fmt.Errorf("audit verify: no audit log at %s (nor rotated %s.<time> files beside it)", fs.Arg(0), fs.Arg(0))
	}
	res, err := audit.VerifyFiles(files...)
	if err != nil {
		var be *audit.BrokenError
		if errors.As(err, &be) {
			fmt.Fprintf(stderr, "audit log broken at %s:%d: %s\n", be.File, be.Line, be.Reason)
			return errReported
		}
		return fmt.Errorf("audit verify: %w", err)
	}
	fmt.Fprintf(stdout, "%d records verified\n", res.Records)
	for _, r := range res.Repairs {
		fmt.Fprintf(stdout, "repair at %s:%d (seq %d): an incomplete last line of %d bytes was cut at a start; the chain continues from hash %s\n",
			r.File, r.Line, r.Seq, r.CutBytes, r.LastHash)
	}
	if res.Forwarded > 0 {
		fmt.Fprintf(stdout, "%d forwarded requests; %d without a completion record (in flight when the log was read or the process stopped)\n",
			res.Forwarded, res.UnfinishedCount)
	}
	if res.Head.Seq > 0 {
		fmt.Fprintf(stdout, "head: seq %d hash %s (compare with the head Gatehouse logged to detect truncation)\n", res.Head.Seq, res.Head.Hash)
	}
	return nil
}
