package session

import (
	"context"
	"errors"
	"sync"
	"time"
)

// MemoryStore keeps records in process memory. It is for tests and single
// instances that accept losing every session on restart.
type MemoryStore struct {
	now func() time.Time

	mu     sync.Mutex
	recs   map[string]Record
	keys   map[string]heldKey
	closed bool
	writes int
}

type heldKey struct {
	token   string
	expires time.Time
}

var errClosed = errors.New("session store is closed")

// NewMemoryStore returns an empty in-memory store using clock now (time.Now
// when nil) to expire records and keys.
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{now: now, recs: make(map[string]Record), keys: make(map[string]heldKey)}
}

func cloneRecord(r Record) Record {
	r.Sealed = append([]byte(nil), r.Sealed...)
	return r
}

// liveLocked returns the record if it exists and has not expired, and
// forgets it if it has.
func (s *MemoryStore) liveLocked(id string, now time.Time) (Record, bool) {
	r, ok := s.recs[id]
	if !ok {
		return Record{}, false
	}
	if !now.Before(r.Expires()) {
		delete(s.recs, id)
		return Record{}, false
	}
	return r, true
}

// sweepLocked drops expired records and keys every 1000 writes, so that a
// long-running memory store does not grow without bound.
func (s *MemoryStore) sweepLocked(now time.Time) {
	s.writes++
	if s.writes%1000 != 0 {
		return
	}
	for id, r := range s.recs {
		if !now.Before(r.Expires()) {
			delete(s.recs, id)
		}
	}
	for k, h := range s.keys {
		if !now.Before(h.expires) {
			delete(s.keys, k)
		}
	}
}

// Create implements Store.
func (s *MemoryStore) Create(_ context.Context, rec Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	now := s.now()
	s.sweepLocked(now)
	if _, ok := s.liveLocked(rec.ID, now); ok {
		return ErrExists
	}
	if !now.Before(rec.Expires()) {
		return nil // already expired: nothing to keep
	}
	s.recs[rec.ID] = cloneRecord(rec)
	return nil
}

// Replace implements Store.
func (s *MemoryStore) Replace(_ context.Context, rec Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	now := s.now()
	if _, ok := s.liveLocked(rec.ID, now); !ok {
		return ErrNotFound
	}
	if !now.Before(rec.Expires()) {
		delete(s.recs, rec.ID)
		return nil
	}
	s.recs[rec.ID] = cloneRecord(rec)
	return nil
}

// Touch implements Store.
func (s *MemoryStore) Touch(_ context.Context, id string, lastSeen, idleExpiry time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	r, ok := s.liveLocked(id, s.now())
	if !ok {
		return ErrNotFound
	}
	r.LastSeen, r.IdleExpiry = lastSeen, idleExpiry
	s.recs[id] = r
	return nil
}

// Get implements Store.
func (s *MemoryStore) Get(_ context.Context, id string) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Record{}, errClosed
	}
	_, held := s.recs[id]
	r, ok := s.liveLocked(id, s.now())
	if !ok {
		if held {
			return Record{}, errExpiredRecord
		}
		return Record{}, ErrNotFound
	}
	return cloneRecord(r), nil
}

// Delete implements Store.
func (s *MemoryStore) Delete(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errClosed
	}
	_, ok := s.liveLocked(id, s.now())
	delete(s.recs, id)
	return ok, nil
}

// ListBySubject implements Store.
func (s *MemoryStore) ListBySubject(_ context.Context, sub string) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	now := s.now()
	var out []Record
	for id, r := range s.recs {
		if r.Subject != sub {
			continue
		}
		if _, ok := s.liveLocked(id, now); ok {
			out = append(out, cloneRecord(r))
		}
	}
	return out, nil
}

func (s *MemoryStore) deleteWhere(match func(Record) bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	now := s.now()
	var ids []string
	for id, r := range s.recs {
		if !match(r) {
			continue
		}
		if _, ok := s.liveLocked(id, now); ok {
			ids = append(ids, id)
		}
		delete(s.recs, id)
	}
	return ids, nil
}

// DeleteBySubject implements Store.
func (s *MemoryStore) DeleteBySubject(_ context.Context, sub string) ([]string, error) {
	return s.deleteWhere(func(r Record) bool { return r.Subject == sub })
}

// DeleteByIdPSession implements Store.
func (s *MemoryStore) DeleteByIdPSession(_ context.Context, sid string) ([]string, error) {
	return s.deleteWhere(func(r Record) bool { return r.IdPSessionID == sid })
}

// Acquire implements Store.
func (s *MemoryStore) Acquire(_ context.Context, key, token string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errClosed
	}
	now := s.now()
	s.sweepLocked(now)
	if h, ok := s.keys[key]; ok && now.Before(h.expires) {
		return false, nil
	}
	s.keys[key] = heldKey{token: token, expires: now.Add(ttl)}
	return true, nil
}

// Release implements Store.
func (s *MemoryStore) Release(_ context.Context, key, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if h, ok := s.keys[key]; ok && h.token == token {
		delete(s.keys, key)
	}
	return nil
}

// Take implements Taker.
func (s *MemoryStore) Take(_ context.Context, key string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", false, errClosed
	}
	h, ok := s.keys[key]
	if !ok {
		return "", false, nil
	}
	delete(s.keys, key)
	if !s.now().Before(h.expires) {
		return "", false, nil
	}
	return h.token, true, nil
}

// Ping implements Store.
func (s *MemoryStore) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	return nil
}

// Close implements Store.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}
