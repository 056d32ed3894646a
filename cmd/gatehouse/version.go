package main

import (
	"runtime/debug"
	"strings"
)

// Set by the release build with -ldflags "-X main.buildVersion=… -X
// main.buildCommit=… -X main.buildDate=…" (see scripts/release.sh). A plain
// `go build` or `go install …@version` leaves them empty and the module's
// build info fills them in.
var (
	buildVersion string
	buildCommit  string
	buildDate    string
)

// buildInfo is what `gatehouse version` prints.
type buildInfo struct{ Version, Commit, Date string }

// readBuildInfo merges the -ldflags stamps with runtime/debug's build info
// (module version from `go install pkg@v`, vcs.revision and vcs.time from a
// build inside a git checkout).
func readBuildInfo(stampV, stampC, stampD string, bi *debug.BuildInfo, ok bool) buildInfo {
	info := buildInfo{Version: stampV, Commit: stampC, Date: stampD}
	if ok && bi != nil {
		if info.Version == "" && bi.Main.Version != "" {
			info.Version = bi.Main.Version
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.time":
				if info.Date == "" {
					info.Date = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && stampC == "" && info.Commit != "" && !strings.HasSuffix(info.Commit, "-dirty") {
			info.Commit += "-dirty"
		}
	}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	if info.Date == "" {
		info.Date = "unknown"
	}
	return info
}

func currentBuild() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	return readBuildInfo(buildVersion, buildCommit, buildDate, bi, ok)
}

// version is the short form logged at start and sent as the tracing
// service version.
func version() string { return currentBuild().Version }

// String is the line `gatehouse version` prints.
func (b buildInfo) String() string {
	return "gatehouse " + b.Version + " (commit " + b.Commit + ", built " + b.Date + ")"
}
