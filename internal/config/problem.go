package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a position in a configuration file. Line and Column are 1-based.
type Pos struct {
	File   string
	Line   int
	Column int
}

// String formats the position as file:line, the form editors and CI logs link.
func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Problem is one thing wrong (or, as a warning, worth a second look) in a
// configuration file. Message says what is wrong and how to fix it; it never
// contains a secret value.
type Problem struct {
	File    string
	Line    int
	Column  int
	Key     string // key path such as routes[1].timeout; empty for file-level problems
	Message string
	// Frontend is the client name of the frontends[] entry the problem is
	// in; empty for process-wide keys and in the one-frontend form.
	Frontend string
}

// Problem returns a Problem at p. Later build stages use it to report errors
// in values they compile (e.g. a route's CEL expression) the same way the
// loader reports its own: "file:line: key: message".
func (p Pos) Problem(key, message string) Problem {
	return Problem{File: p.File, Line: p.Line, Column: p.Column, Key: key, Message: message}
}

// String formats the problem as "file:line: key: message".
func (p Problem) String() string {
	if p.Key == "" {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	}
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Key, p.Message)
}

// Error makes a single Problem usable as an error.
func (p Problem) Error() string { return p.String() }

// Errors is the error Load and Parse return: every problem found in the
// file, in file order, so that one run of `gatehouse check` shows them all.
type Errors struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Add appends a problem. Build stages that collect several problems (one per
// route, say) use it with ErrOrNil.
func (e *Errors) Add(p Problem) { e.Problems = append(e.Problems, p) }

// ErrOrNil returns e sorted by position when it holds problems, and nil
// otherwise, so callers can write `return errs.ErrOrNil()`.
func (e *Errors) ErrOrNil() error {
	if e == nil || len(e.Problems) == 0 {
		return nil
	}
	sortProblems(e.Problems)
	return e
}

func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}
