package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

type report struct {
	Machine map[string]any `json:"machine"`
	Flags   map[string]any `json:"flags"`
	Results []result       `json:"results"`
}

func flagMap(f flags) map[string]any {
	return map[string]any{"duration": f.duration.String(), "rounds": f.rounds, "conns": f.conns, "sessions": f.sessions, "stored_sessions": f.stored}
}

func printTable(w io.Writer, f flags, rs []result) {
	fmt.Fprintf(w, "\n%d connections, %d rounds of %s per target, alternating; latency in µs; CPU µs and allocations per request are the server process's own\n\n",
		f.conns, f.rounds, f.duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttarget\treq/s\tp50\tp99\tp99.9\tCPU µs/req\tallocs/req\treq/upstream conn\tratio\t")
	row := func(name string, s summary, ratio string) {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.0f\t%s\t%s\t\n", name, s.Target, s.RPS, s.P50us, s.P99us, s.P999us,
			s.CPUusPerReq, s.AllocsPerReq, perConn(s.ReqPerUpConn), ratio)
	}
	for _, r := range rs {
		if r.Bare != nil {
			row(r.Scenario, *r.Bare, "")
			row("", r.Gatehouse, fmt.Sprintf("%.2f×", r.Ratio))
			continue
		}
		if r.Gatehouse.Requests == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\t\t\t\t\n", r.Scenario, r.Gatehouse.Target, "see below")
			continue
		}
		row(r.Scenario, r.Gatehouse, "")
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rs {
		fmt.Fprintf(w, "  %s: %s\n", r.Scenario, r.What)
		if len(r.Extra) > 0 {
			keys := slices.Sorted(maps.Keys(r.Extra))
			var parts []string
			for _, k := range keys {
				parts = append(parts, k+"="+fmtNum(r.Extra[k]))
			}
			fmt.Fprintf(w, "      %s\n", strings.Join(parts, " "))
		}
	}
}

func perConn(v float64) string {
	if v == 0 {
		return "all reused" // no upstream connection was opened during the rounds
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtNum(v any) string {
	switch f := v.(type) {
	case float64:
		if f != 0 && f < 100 && f > -100 {
			return fmt.Sprintf("%.2f", f)
		}
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprint(v)
}
