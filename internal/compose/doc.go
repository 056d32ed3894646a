// Package compose serves composite endpoints: one exact path that fans out to
// several calls, each through a named route of the allow-list, and answers
// one JSON document shaped by a CEL expression.
//
// Lifecycle: Compile validates every Spec against the route table at load and
// returns every problem (*Errors); the resulting Set matches request paths
// (Set.Match) and each Composite serves one request for an identified caller
// (Composite.Serve) through a Doer — the route pipeline's post-identify half
// (policy, credential, forward, audit) bound to that caller. This package
// never forwards anything itself, so a call gets exactly what a direct
// request to its route would.
//
// Templates ({user.<claim>}, {param.<name>}, {query.<name>},
// {calls.<call>.<field>}) are parsed at Compile. A value fills exactly one path
// segment or one query value: it is percent-encoded, and the expanded path is
// cleaned again with proxy.CleanPath and must come out unchanged and under the
// route's path, so a value can never add a segment, climb with "..", change
// the host or leave the route. Values a path segment cannot carry unambiguously
// ("", ".", "..", "/", "\", "%", ";", control characters, look-alikes of "/"
// and ".") fail the call with code bad_input instead of being rewritten.
package compose
