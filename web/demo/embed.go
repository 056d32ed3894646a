// Package webdemo embeds the demo single-page app that `gatehouse demo` serves: plain
// HTML, JavaScript and CSS, no build step, no external resources, and nothing stored in the
// browser but Gatehouse's own HttpOnly cookie.
package webdemo

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files returns the app's files (index.html, app.js, app.css) at the root of the FS.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// fs.Sub fails only for an invalid path name; "static" is valid, so this is a bug.
		panic("webdemo: " + err.Error())
	}
	return sub
}
