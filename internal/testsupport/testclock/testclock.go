// Package testclock holds a clock that tests move forward instead of
// sleeping, for idle and absolute timeouts and token expiry.
package testclock

import (
	"sync/atomic"
	"time"
)

// Clock is time.Now plus an offset that Advance moves forward. The zero
// value is the real clock. It is safe for concurrent use.
type Clock struct{ off atomic.Int64 }

// Now is the current time plus the offset.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.off.Add(int64(d)) }
