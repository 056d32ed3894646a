package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Repeated identical warnings and errors (one per refused request during an outage) are
// rate-limited: per message, at most repeatBurst lines per repeatWindow are written; the rest
// are counted, and the next line written for that message carries "repeats_suppressed". An
// 8 s Redis outage then writes a few lines, not one per request. Messages are constant strings
// in the code, so the map of them stays small.
const (
	repeatWindow = 10 * time.Second
	repeatBurst  = 5
)

type repeatState struct {
	mu   sync.Mutex
	now  func() time.Time
	msgs map[string]*repeatCount
}

type repeatCount struct {
	start      time.Time
	n          int
	suppressed int
}

// rateLimited wraps a handler; WithAttrs and WithGroup share the state.
type rateLimited struct {
	next slog.Handler
	st   *repeatState
}

func newRateLimited(next slog.Handler, now func() time.Time) *rateLimited {
	return &rateLimited{next: next, st: &repeatState{now: now, msgs: map[string]*repeatCount{}}}
}

func (h *rateLimited) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *rateLimited) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	st := h.st
	st.mu.Lock()
	now := st.now()
	c := st.msgs[r.Message]
	if c == nil {
		c = &repeatCount{start: now}
		st.msgs[r.Message] = c
	}
	if now.Sub(c.start) >= repeatWindow {
		c.start, c.n = now, 0
	}
	c.n++
	if c.n > repeatBurst {
		c.suppressed++
		st.mu.Unlock()
		return nil
	}
	suppressed := c.suppressed
	c.suppressed = 0
	st.mu.Unlock()
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("repeats_suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

func (h *rateLimited) WithAttrs(as []slog.Attr) slog.Handler {
	return &rateLimited{next: h.next.WithAttrs(as), st: h.st}
}

func (h *rateLimited) WithGroup(name string) slog.Handler {
	return &rateLimited{next: h.next.WithGroup(name), st: h.st}
}
