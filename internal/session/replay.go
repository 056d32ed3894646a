package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// WindowOncer is implemented by stores that serve one instance (bolt). They
// keep single-use ids whose acceptance window is known (DPoP proof ids) in
// memory instead of writing each one to disk, and hand them to the next
// process on Close. Redis does not implement it: there the id must be seen
// by every instance, so Once (SET NX) is used.
type WindowOncer interface {
	// OnceWithin reports whether key is seen for the first time, remembering
	// it until until (or up to a second longer). from is the earliest time the id could have been
	// presented, to this process or an earlier one on the same file: when
	// the earlier one ended without handing its ids over (a crash), ids that
	// could have been presented to it are refused with ErrReplayUnknown.
	OnceWithin(ctx context.Context, key string, from, until time.Time) (first bool, err error)
}

// ErrReplayUnknown is a single-use id that may have been seen by a previous
// process whose ids were lost (it did not shut down cleanly): it is neither
// accepted nor refused as a replay, and the caller answers 503 until ids
// that recent can no longer be presented.
var ErrReplayUnknown = errors.New("single-use ids from before this start were lost (the previous process did not shut down cleanly)")

// errReplayFull is the in-memory id set at its bound: new ids are refused
// (fail closed) until old ones expire.
var errReplayFull = errors.New("the in-memory replay cache is full")

// DefaultReplayIDs bounds the single-use ids a bolt store keeps in memory:
// about 90 MB when full, 32 000 DPoP proofs per second for their 65 s window.
const DefaultReplayIDs = 1 << 21

const replayShards = 16 // a power of two: spreads the lock on many cores

// replayKey is the id's SHA-256, truncated: 128 bits keep an accidental
// collision (which would refuse a fresh proof, never accept a replay) out of
// reach, and a map without pointers is not scanned by the GC.
type replayKey [16]byte

func replayKeyOf(key string) replayKey {
	sum := sha256.Sum256([]byte(key))
	return replayKey(sum[:16])
}

// replaySet remembers single-use ids in memory, each until its expiry. It
// is split into shards, each with two generations: ids go into cur; when cur
// is older than the longest retention asked for it becomes prev and the old
// prev, whose ids have all expired, is dropped. So no sweep walks the ids.
type replaySet struct {
	now func() time.Time
	// base is the origin of the expiries kept: whole seconds after it, so
	// that an entry is 20 bytes.
	base int64
	// since is when this set became the only record: ids that could have
	// been presented before it may have been seen by a process that
	// crashed. Zero when the previous process handed its ids over.
	since    time.Time
	perShard int
	shards   [replayShards]replayShard
}

type replayShard struct {
	mu        sync.Mutex
	closed    bool
	cur, prev map[replayKey]uint32 // id -> expiry (seconds after base, rounded up)
	started   int64                // when cur became current (Unix ns)
	window    int64                // longest retention asked for (ns)
}

func newReplaySet(now func() time.Time, since time.Time, capacity int) *replaySet {
	if capacity <= 0 {
		capacity = DefaultReplayIDs
	}
	t := now().UnixNano()
	s := &replaySet{now: now, base: t, since: since, perShard: max(1, capacity/replayShards)}
	for i := range s.shards {
		s.shards[i] = replayShard{cur: map[replayKey]uint32{}, prev: map[replayKey]uint32{}, started: t}
	}
	return s
}

// toSecs is an expiry as kept: rounded up, so an id is never forgotten
// early (at most a second late). fromSecs is its Unix ns.
func (s *replaySet) toSecs(exp int64) uint32 {
	d := exp - s.base
	if d <= 0 {
		return 0
	}
	return uint32(min((d+int64(time.Second)-1)/int64(time.Second), math.MaxUint32))
}

func (s *replaySet) fromSecs(x uint32) int64 { return s.base + int64(x)*int64(time.Second) }

func (s *replaySet) shard(k replayKey) *replayShard { return &s.shards[k[0]%replayShards] }

// once implements WindowOncer.OnceWithin.
func (s *replaySet) once(key string, from, until time.Time) (bool, error) {
	if from.Before(s.since) {
		return false, ErrReplayUnknown
	}
	now := s.now().UnixNano()
	exp := until.UnixNano()
	if exp <= now {
		return false, errors.New("once: the id's window has already ended")
	}
	k := replayKeyOf(key)
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return false, errClosed
	}
	x := s.toSecs(exp)
	sh.window = max(sh.window, s.fromSecs(x)-now)
	sh.rotate(now)
	if y, ok := sh.cur[k]; ok && s.fromSecs(y) > now {
		return false, nil
	}
	if y, ok := sh.prev[k]; ok && s.fromSecs(y) > now {
		return false, nil
	}
	if len(sh.cur)+len(sh.prev) >= s.perShard {
		return false, fmt.Errorf("%w (%d ids)", errReplayFull, s.perShard*replayShards)
	}
	sh.cur[k] = x
	return true, nil
}

// rotate drops prev once every id in it has expired: they were all added
// before cur started, with a retention of at most window.
func (sh *replayShard) rotate(now int64) {
	if now-sh.started < sh.window {
		return
	}
	sh.prev = sh.cur
	sh.cur = map[replayKey]uint32{}
	sh.started = now
}

// sweep rotates idle shards so that expired ids do not stay in memory until
// the next one arrives.
func (s *replaySet) sweep() {
	now := s.now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if !sh.closed {
			sh.rotate(now)
		}
		sh.mu.Unlock()
	}
}

// replayID is an id and its expiry, as handed over between processes.
type replayID struct {
	key replayKey
	exp int64
}

// add puts a handed-over id back; it reports false when the set is full.
func (s *replaySet) add(id replayID) bool {
	sh := s.shard(id.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.cur)+len(sh.prev) >= s.perShard {
		return false
	}
	x := s.toSecs(id.exp)
	sh.window = max(sh.window, s.fromSecs(x)-sh.started)
	if y, ok := sh.cur[id.key]; !ok || y < x {
		sh.cur[id.key] = x
	}
	return true
}

// close refuses every later id and returns the live ones, sorted (bolt
// writes sorted keys into full pages).
func (s *replaySet) close() []replayID {
	now := s.now().UnixNano()
	var out []replayID
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.closed = true
		for _, m := range []map[replayKey]uint32{sh.cur, sh.prev} {
			for k, x := range m {
				if exp := s.fromSecs(x); exp > now {
					out = append(out, replayID{k, exp})
				}
			}
		}
		sh.cur, sh.prev = nil, nil
		sh.mu.Unlock()
	}
	// An id in both generations (re-added after expiring in prev) is
	// written once, with the later expiry.
	slices.SortFunc(out, func(a, b replayID) int {
		if c := bytes.Compare(a.key[:], b.key[:]); c != 0 {
			return c
		}
		return int(max(-1, min(1, b.exp-a.exp)))
	})
	return slices.CompactFunc(out, func(a, b replayID) bool { return a.key == b.key })
}
