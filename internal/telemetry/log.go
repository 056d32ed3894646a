// Package telemetry sets up what Gatehouse tells operators about itself: JSON
// logs (log/slog), Prometheus metrics for the admin listener, and OpenTelemetry
// tracing with W3C trace context propagated to upstreams.
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// ParseLevel maps a config log level (debug, info, warn, error) to slog.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q is not one of debug, info, warn, error", s)
}

// NewLogger returns a JSON logger writing to w at level. Values that implement
// slog.LogValuer (secret.Secret does) are resolved by slog itself, so secrets
// passed by mistake still print redacted. Repeated identical warnings and
// errors are rate-limited with a count (see rateLimited).
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(newRateLimited(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}), time.Now))
}
