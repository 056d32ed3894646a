package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildInfo(t *testing.T) {
	vcs := &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abcdef0123456789"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}}}
	dirty := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}}
	tests := []struct {
		name    string
		v, c, d string
		bi      *debug.BuildInfo
		want    buildInfo
	}{
		{"ldflags win", "v9.9.9", "1234", "2026-12-01T00:00:00Z", vcs, buildInfo{"v9.9.9", "1234", "2026-12-01T00:00:00Z"}},
		{"go install pkg@version", "", "", "", vcs, buildInfo{"v1.2.3", "abcdef0123456789", "2026-01-02T03:04:05Z"}},
		{"dirty checkout", "", "", "", dirty, buildInfo{"(devel)", "abc-dirty", "unknown"}},
		{"no build info", "", "", "", nil, buildInfo{"(devel)", "unknown", "unknown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := readBuildInfo(tc.v, tc.c, tc.d, tc.bi, tc.bi != nil); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestVersionCommandPrintsVersionCommitDate(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"version"}, &out, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	s := out.String()
	if !strings.HasPrefix(s, "gatehouse ") || !strings.Contains(s, "(commit ") || !strings.Contains(s, ", built ") {
		t.Fatalf("version printed %q", s)
	}
}
