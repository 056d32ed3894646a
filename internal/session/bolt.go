package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	bucketSessions = []byte("sessions") // id -> marshalRecord
	bucketBySub    = []byte("by_sub")   // indexKey(sub, id) -> nil
	bucketBySID    = []byte("by_sid")   // indexKey(idp sid, id) -> nil
	bucketByExp    = []byte("by_exp")   // expires (8 bytes BE ns) || id -> nil
	bucketKeys     = []byte("keys")     // key -> expires (8 bytes BE ns) || token
	// bucketReplay holds the in-memory single-use ids (replay.go) between a
	// clean Close and the next open: id hash (16 bytes) -> expires (8 bytes
	// BE ns), and replayHandedOver once all of them are written.
	bucketReplay     = []byte("replay")
	replayHandedOver = []byte("handed-over")
	// legacyReplayPrefix is DPoP proof ids as Manager.Once keeps them in
	// bucketKeys: "once:" + the OnceWithin key.
	legacyReplayPrefix = []byte("once:dpop:")
)

// BoltOptions configure a BoltStore. Zero fields take defaults.
type BoltOptions struct {
	// Now is the clock for expiry; time.Now when nil.
	Now func() time.Time
	// SweepInterval is how often expired records and keys are deleted
	// (default 1 minute; negative disables the sweeper, call Sweep instead).
	SweepInterval time.Duration
	// OpenTimeout bounds the wait for the file lock held by another process
	// (default 1s).
	OpenTimeout time.Duration
	// Logger receives sweep failures; discarded when nil.
	Logger *slog.Logger
	// ReplayIDs bounds the single-use ids (DPoP proof ids) kept in memory
	// (default DefaultReplayIDs); beyond it new ones are refused.
	ReplayIDs int
}

// BoltStore keeps sessions in an embedded bbolt file: persistent across
// restarts, for a single Gatehouse instance (bbolt locks the file).
//
// Single-use ids with a known window (OnceWithin: DPoP proof ids, one per
// native API request) are kept in memory, not written per request (a write
// is an fsync): Close writes them to the file and the next open reads them
// back. After a crash they are lost, and ids that could have been presented
// before the new start are refused with ErrReplayUnknown.
type BoltStore struct {
	db     *bolt.DB
	now    func() time.Time
	log    *slog.Logger
	replay *replaySet

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// OpenBoltStore opens (creating if needed, mode 0600) the bbolt file at path
// and starts the periodic sweep of expired records.
func OpenBoltStore(path string, opts BoltOptions) (*BoltStore, error) {
	if path == "" {
		return nil, errors.New("bolt session store: path is empty; set session.bolt.path")
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bolt session store: create directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.OpenTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("bolt session store %s: file is locked by another process (bolt serves one instance; use redis for several): %w", path, err)
		}
		return nil, fmt.Errorf("bolt session store %s: %w", path, err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	var replay *replaySet
	err = db.Update(func(tx *bolt.Tx) error {
		fresh := tx.Bucket(bucketSessions) == nil // no session could have been used with a proof
		for _, b := range [][]byte{bucketSessions, bucketBySub, bucketBySID, bucketByExp, bucketKeys} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		var err error
		replay, err = takeReplayIDs(tx, now, fresh, opts.ReplayIDs)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt session store %s: init buckets: %w", path, err)
	}
	// A lone Create waits at most this long for company before committing;
	// under load, writers queue behind the running commit anyway.
	db.MaxBatchDelay = 2 * time.Millisecond
	s := &BoltStore{db: db, now: now, log: opts.Logger, replay: replay, stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if !replay.since.IsZero() {
		s.log.Warn("bolt session store: the previous process did not shut down cleanly and its DPoP proof ids are lost; proofs that could predate this start are answered 503 (for at most 65 s)")
	}
	interval := opts.SweepInterval
	if interval == 0 {
		interval = time.Minute
	}
	if interval > 0 {
		s.wg.Go(func() { s.sweepLoop(interval) })
	}
	return s, nil
}

func indexKey(v, id string) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(v)+len(id))
	b = binary.AppendUvarint(b, uint64(len(v)))
	b = append(b, v...)
	return append(b, id...)
}

func expKey(t time.Time, id string) []byte {
	b := make([]byte, 0, 8+len(id))
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(t)))
	return append(b, id...)
}

// getLocked returns the stored record (expired or not) and whether it exists.
func getLocked(tx *bolt.Tx, id string) (Record, bool, error) {
	v := tx.Bucket(bucketSessions).Get([]byte(id))
	if v == nil {
		return Record{}, false, nil
	}
	r, err := unmarshalRecord(v)
	if err != nil {
		return Record{}, false, fmt.Errorf("session %s: %w", id, err)
	}
	return r, true, nil
}

func removeLocked(tx *bolt.Tx, r Record) error {
	if err := tx.Bucket(bucketSessions).Delete([]byte(r.ID)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketBySub).Delete(indexKey(r.Subject, r.ID)); err != nil {
		return err
	}
	if r.IdPSessionID != "" {
		if err := tx.Bucket(bucketBySID).Delete(indexKey(r.IdPSessionID, r.ID)); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketByExp).Delete(expKey(r.Expires(), r.ID))
}

func putLocked(tx *bolt.Tx, r Record) error {
	if err := tx.Bucket(bucketSessions).Put([]byte(r.ID), marshalRecord(r)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketBySub).Put(indexKey(r.Subject, r.ID), nil); err != nil {
		return err
	}
	if r.IdPSessionID != "" {
		if err := tx.Bucket(bucketBySID).Put(indexKey(r.IdPSessionID, r.ID), nil); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketByExp).Put(expKey(r.Expires(), r.ID), nil)
}

// liveLocked returns the record if it exists and has not expired.
func (s *BoltStore) liveLocked(tx *bolt.Tx, id string) (Record, bool, error) {
	r, ok, err := getLocked(tx, id)
	if err != nil || !ok {
		return Record{}, false, err
	}
	if !s.now().Before(r.Expires()) {
		return r, false, nil
	}
	return r, true, nil
}

// Create implements Store. Concurrent Creates (a burst of logins, seeding)
// are coalesced by bbolt's Batch into one transaction and one fsync; the
// function is idempotent, as Batch requires (it reruns a failing call alone,
// so ErrExists reaches only its own caller).
func (s *BoltStore) Create(_ context.Context, rec Record) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		old, exists, err := getLocked(tx, rec.ID)
		if err != nil {
			return err
		}
		if exists {
			if s.now().Before(old.Expires()) {
				return ErrExists
			}
			if err := removeLocked(tx, old); err != nil {
				return err
			}
		}
		if !s.now().Before(rec.Expires()) {
			return nil
		}
		return putLocked(tx, rec)
	})
}

// Replace implements Store.
func (s *BoltStore) Replace(_ context.Context, rec Record) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		old, live, err := s.liveLocked(tx, rec.ID)
		if err != nil {
			return err
		}
		if !live {
			return ErrNotFound
		}
		if err := removeLocked(tx, old); err != nil {
			return err
		}
		if !s.now().Before(rec.Expires()) {
			return nil
		}
		return putLocked(tx, rec)
	})
}

// Touch implements Store.
func (s *BoltStore) Touch(_ context.Context, id string, lastSeen, idleExpiry time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		r, live, err := s.liveLocked(tx, id)
		if err != nil {
			return err
		}
		if !live {
			return ErrNotFound
		}
		if err := tx.Bucket(bucketByExp).Delete(expKey(r.Expires(), r.ID)); err != nil {
			return err
		}
		r.LastSeen, r.IdleExpiry = lastSeen, idleExpiry
		return putLocked(tx, r)
	})
}

// Get implements Store.
func (s *BoltStore) Get(_ context.Context, id string) (Record, error) {
	var out Record
	err := s.db.View(func(tx *bolt.Tx) error {
		r, live, err := s.liveLocked(tx, id)
		if err != nil {
			return err
		}
		if !live {
			if r.ID != "" {
				return errExpiredRecord
			}
			return ErrNotFound
		}
		out = r
		return nil
	})
	return out, err
}

// Delete implements Store.
func (s *BoltStore) Delete(_ context.Context, id string) (bool, error) {
	var existed bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, live, err := s.liveLocked(tx, id)
		if err != nil {
			return err
		}
		existed = live
		if r.ID == "" {
			return nil
		}
		return removeLocked(tx, r)
	})
	return existed, err
}

// scanIndex returns the live records whose index key in bucket starts with v.
func (s *BoltStore) scanIndex(tx *bolt.Tx, bucket []byte, v string) ([]Record, error) {
	prefix := indexKey(v, "")
	var out []Record
	c := tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		r, live, err := s.liveLocked(tx, string(k[len(prefix):]))
		if err != nil {
			return nil, err
		}
		if live {
			out = append(out, r)
		}
	}
	return out, nil
}

// ListBySubject implements Store.
func (s *BoltStore) ListBySubject(_ context.Context, sub string) ([]Record, error) {
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = s.scanIndex(tx, bucketBySub, sub)
		return err
	})
	return out, err
}

func (s *BoltStore) deleteByIndex(bucket []byte, v string) ([]string, error) {
	var ids []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		ids = ids[:0]
		recs, err := s.scanIndex(tx, bucket, v)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := removeLocked(tx, r); err != nil {
				return err
			}
			ids = append(ids, r.ID)
		}
		return nil
	})
	return ids, err
}

// DeleteBySubject implements Store.
func (s *BoltStore) DeleteBySubject(_ context.Context, sub string) ([]string, error) {
	return s.deleteByIndex(bucketBySub, sub)
}

// DeleteByIdPSession implements Store.
func (s *BoltStore) DeleteByIdPSession(_ context.Context, sid string) ([]string, error) {
	if sid == "" {
		return nil, nil
	}
	return s.deleteByIndex(bucketBySID, sid)
}

// Acquire implements Store.
func (s *BoltStore) Acquire(_ context.Context, key, token string, ttl time.Duration) (bool, error) {
	var ok bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		now := s.now()
		if v := b.Get([]byte(key)); len(v) >= 8 && now.Before(fromUnixNano(int64(binary.BigEndian.Uint64(v)))) {
			ok = false
			return nil
		}
		v := binary.BigEndian.AppendUint64(nil, uint64(now.Add(ttl).UnixNano()))
		ok = true
		return b.Put([]byte(key), append(v, token...))
	})
	return ok, err
}

// Release implements Store.
func (s *BoltStore) Release(_ context.Context, key, token string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if v := b.Get([]byte(key)); len(v) >= 8 && string(v[8:]) == token {
			return b.Delete([]byte(key))
		}
		return nil
	})
}

// Take implements Taker (one read-write transaction: get and delete).
func (s *BoltStore) Take(_ context.Context, key string) (string, bool, error) {
	var tok string
	var ok bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		v := b.Get([]byte(key))
		if v == nil {
			return nil
		}
		if len(v) >= 8 && s.now().Before(fromUnixNano(int64(binary.BigEndian.Uint64(v)))) {
			tok, ok = string(v[8:]), true
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return "", false, err
	}
	return tok, ok, nil
}

// Ping implements Store: it fails once the store is closed.
func (s *BoltStore) Ping(context.Context) error {
	return s.db.View(func(*bolt.Tx) error { return nil })
}

// Sweep deletes expired records and keys now and reports how many records
// it deleted. It runs periodically by itself.
func (s *BoltStore) Sweep() (int, error) {
	const batch = 1000 // keep write transactions short
	total := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			n = 0
			now := uint64(s.now().UnixNano())
			c := tx.Bucket(bucketByExp).Cursor()
			var expired []string
			for k, _ := c.First(); k != nil && len(k) >= 8 && binary.BigEndian.Uint64(k) <= now && len(expired) < batch; k, _ = c.Next() {
				expired = append(expired, string(k[8:]))
			}
			for _, id := range expired {
				r, ok, err := getLocked(tx, id)
				if err != nil {
					return err
				}
				if ok && uint64(unixNano(r.Expires())) <= now {
					if err := removeLocked(tx, r); err != nil {
						return err
					}
					n++
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("sweep expired sessions: %w", err)
		}
		total += n
		if n < batch {
			break
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		now := uint64(s.now().UnixNano())
		b := tx.Bucket(bucketKeys)
		var expired [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if len(v) < 8 || binary.BigEndian.Uint64(v) <= now {
				expired = append(expired, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("sweep expired keys: %w", err)
	}
	return total, nil
}

func (s *BoltStore) sweepLoop(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if _, err := s.Sweep(); err != nil {
			s.log.Warn("bolt session store sweep failed", "error", err)
		}
		s.replay.sweep()
	}
}

// OnceWithin implements WindowOncer: in memory, no write.
func (s *BoltStore) OnceWithin(_ context.Context, key string, from, until time.Time) (bool, error) {
	return s.replay.once(key, from, until)
}

// takeReplayIDs reads the ids the previous process handed over and empties
// the bucket, so that a crash of this process is seen by the next one. The
// set's since is zero when the ids are complete (handed over, or a new file)
// and now otherwise.
func takeReplayIDs(tx *bolt.Tx, now func() time.Time, fresh bool, capacity int) (*replaySet, error) {
	t := now()
	var ids []replayID
	complete := fresh
	if b := tx.Bucket(bucketReplay); b != nil {
		complete = complete || b.Get(replayHandedOver) != nil
		err := b.ForEach(func(k, v []byte) error {
			if len(k) == len(replayKey{}) && len(v) == 8 {
				if exp := int64(binary.BigEndian.Uint64(v)); exp > t.UnixNano() {
					ids = append(ids, replayID{replayKey(k), exp})
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if err := tx.DeleteBucket(bucketReplay); err != nil {
			return nil, err
		}
	}
	if _, err := tx.CreateBucket(bucketReplay); err != nil {
		return nil, err
	}
	// Ids an earlier Gatehouse wrote with Once (one write per proof) count
	// too: after a downgrade and an upgrade within a proof's window, the
	// handover marker would not know of them.
	c := tx.Bucket(bucketKeys).Cursor()
	for k, v := c.Seek(legacyReplayPrefix); bytes.HasPrefix(k, legacyReplayPrefix); k, v = c.Next() {
		if len(v) >= 8 {
			if exp := int64(binary.BigEndian.Uint64(v)); exp > t.UnixNano() {
				ids = append(ids, replayID{replayKeyOf(string(k[len("once:"):])), exp})
			}
		}
	}
	since := time.Time{}
	if !complete {
		since = t
	}
	set := newReplaySet(now, since, capacity)
	for _, id := range ids {
		if !set.add(id) { // a smaller bound than the last process's: not all fit
			set.since = t
			break
		}
	}
	return set, nil
}

// handOverReplayIDs writes the in-memory ids for the next process, in
// transactions of bounded size; the marker goes in last, so that a crash
// midway counts as no handover.
func (s *BoltStore) handOverReplayIDs() error {
	ids := s.replay.close()
	const batch = 50000
	for {
		n := min(batch, len(ids))
		last := n == len(ids)
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketReplay)
			b.FillPercent = 1 // sorted keys: full pages
			var v [8]byte
			for _, id := range ids[:n] {
				binary.BigEndian.PutUint64(v[:], uint64(id.exp))
				if err := b.Put(id.key[:], v[:]); err != nil {
					return err
				}
			}
			if last {
				return b.Put(replayHandedOver, binary.BigEndian.AppendUint64(nil, uint64(s.now().UnixNano())))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if ids = ids[n:]; last {
			return nil
		}
	}
}

// Close stops the sweeper, hands the in-memory single-use ids over to the
// next process and closes the file.
func (s *BoltStore) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		if herr := s.handOverReplayIDs(); herr != nil {
			s.log.Error("bolt session store: could not keep the DPoP proof ids for the next start; it will answer 503 to proofs made before it", "error", herr)
		}
		err = s.db.Close()
	})
	return err
}
