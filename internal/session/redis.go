package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// RedisOptions configure a RedisStore. Give either URL (standalone) or Addrs
// (with MasterName: sentinel; several addrs or Cluster: cluster).
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db or rediss://… (TLS).
	URL string
	// Addrs are host:port pairs of sentinels (with MasterName), cluster
	// nodes (two or more, or Cluster), or one standalone server.
	Addrs      []string
	MasterName string
	// Cluster treats a single address as a cluster endpoint.
	Cluster  bool
	Username string
	// Password overrides one given in URL.
	Password secret.Secret
	DB       int
	// KeyPrefix namespaces every key and the invalidation channel
	// (default "gatehouse:"), so several deployments can share a server.
	KeyPrefix string
	TLSConfig *tls.Config
	// DialTimeout and IOTimeout bound each connection attempt and each
	// command (default 1s each), so that an unreachable server fails fast.
	DialTimeout, IOTimeout time.Duration
	// Now is the clock for expiry decisions; time.Now when nil.
	Now func() time.Time
	// Logger receives subscription trouble; discarded when nil.
	Logger *slog.Logger
}

// RedisStore keeps sessions in redis (standalone, sentinel or cluster) so
// that several Gatehouse instances share them. Every key has a TTL: a record
// lives until its idle or absolute expiry, index sets until the latest
// absolute expiry of their members. It implements Notifier over pub/sub.
// Each command touches one key, so it works on a cluster.
type RedisStore struct {
	c       redis.UniversalClient
	prefix  string
	channel string
	now     func() time.Time
	log     *slog.Logger
}

// A refused connection must fail a request quickly (go-redis defaults to
// five attempts 100ms apart, which delays the 503 by half a second).
const (
	dialRetries   = 2
	dialRetryWait = 50 * time.Millisecond
)

// NewRedisStore connects lazily: it does not fail when the server is down
// (the Manager's health check reports it and recovers when it returns).
func NewRedisStore(opts RedisOptions) (*RedisStore, error) {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = time.Second
	}
	if opts.IOTimeout <= 0 {
		opts.IOTimeout = time.Second
	}
	disabled := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	var c redis.UniversalClient
	switch {
	case opts.URL != "" && len(opts.Addrs) > 0:
		return nil, errors.New("redis session store: set either url or addrs, not both")
	case opts.URL != "":
		o, err := redis.ParseURL(opts.URL)
		if err != nil {
			// The parser's message never includes the password, but keep
			// ours generic: the URL may carry one.
			return nil, fmt.Errorf("redis session store: invalid url (want redis://[user:password@]host:port/db or rediss://…): %w", err)
		}
		if !opts.Password.IsZero() {
			o.Password = opts.Password.Reveal()
		}
		if opts.Username != "" {
			o.Username = opts.Username
		}
		if opts.DB != 0 {
			o.DB = opts.DB
		}
		if opts.TLSConfig != nil {
			o.TLSConfig = opts.TLSConfig
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = opts.DialTimeout, opts.IOTimeout, opts.IOTimeout, opts.IOTimeout
		o.ContextTimeoutEnabled = true
		o.DialerRetries, o.DialerRetryTimeout = dialRetries, dialRetryWait
		o.MaxRetries = 1
		o.DisableIdentity = true
		o.MaintNotificationsConfig = disabled
		c = redis.NewClient(o)
	case len(opts.Addrs) > 0:
		for _, a := range opts.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("redis session store: address %q: want host:port", a)
			}
		}
		c = redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs: opts.Addrs, MasterName: opts.MasterName, IsClusterMode: opts.Cluster,
			Username: opts.Username, Password: opts.Password.Reveal(), DB: opts.DB, TLSConfig: opts.TLSConfig,
			DialTimeout: opts.DialTimeout, ReadTimeout: opts.IOTimeout, WriteTimeout: opts.IOTimeout, PoolTimeout: opts.IOTimeout,
			ContextTimeoutEnabled: true, MaxRetries: 1, DisableIdentity: true,
			DialerRetries: dialRetries, DialerRetryTimeout: dialRetryWait,
			MaintNotificationsConfig: disabled,
		})
	default:
		return nil, errors.New("redis session store: set url (standalone) or addrs (sentinel with master_name, or cluster)")
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		cc.AddHook(reloadSlotsOnError{cc})
	}
	s := &RedisStore{c: c, prefix: opts.KeyPrefix, now: opts.Now, log: opts.Logger}
	if s.prefix == "" {
		s.prefix = "gatehouse:"
	}
	s.channel = s.prefix + "invalidate"
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// KeyPrefix is the prefix of every key the store writes.
func (s *RedisStore) KeyPrefix() string { return s.prefix }

func (s *RedisStore) recKey(id string) string  { return s.prefix + "s:" + id }
func (s *RedisStore) subKey(sub string) string { return s.prefix + "u:" + sub }
func (s *RedisStore) sidKey(sid string) string { return s.prefix + "i:" + sid }
func (s *RedisStore) kvKey(key string) string  { return s.prefix + "k:" + key }

// ttlMillis rounds d up to whole milliseconds (redis PX); <= 0 means expired.
func ttlMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// Hash fields of a record.
const (
	fSub, fSID, fCreated, fSeen, fIdle, fAbs, fSealed = "sub", "sid", "c", "s", "i", "a", "ct"
	fFrontend                                         = "fe"
)

func recordFields(r Record) []any {
	return []any{
		fSub, r.Subject, fSID, r.IdPSessionID,
		fCreated, unixNano(r.Created), fSeen, unixNano(r.LastSeen),
		fIdle, unixNano(r.IdleExpiry), fAbs, unixNano(r.AbsoluteExpiry),
		fSealed, r.Sealed, fFrontend, r.Frontend,
	}
}

func decodeRecord(id string, m map[string]string) (Record, error) {
	r := Record{ID: id, Subject: m[fSub], IdPSessionID: m[fSID], Frontend: m[fFrontend], Sealed: []byte(m[fSealed])}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{fCreated, &r.Created}, {fSeen, &r.LastSeen}, {fIdle, &r.IdleExpiry}, {fAbs, &r.AbsoluteExpiry}} {
		n, err := strconv.ParseInt(m[f.name], 10, 64)
		if err != nil {
			return Record{}, fmt.Errorf("session %s: %w", id, errCorruptRecord)
		}
		*f.dst = fromUnixNano(n)
	}
	return r, nil
}

var (
	createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`)

	// Returns the previous sub and sid, or nil when there is no live record
	// (by the caller's clock, ARGV[2]).
	replaceScript = redis.NewScript(`
local old = redis.call('HMGET', KEYS[1], 'sub', 'sid', 'i', 'a')
if not old[1] then return false end
if math.min(tonumber(old[3]), tonumber(old[4])) <= tonumber(ARGV[2]) then return false end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {old[1], old[2]}`)

	// ARGV: last seen ns, idle expiry ns, now ns. The TTL follows the earlier
	// of the new idle expiry and the stored absolute expiry.
	touchScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'i', 'a')
if not cur[1] then return 0 end
local now = tonumber(ARGV[3])
local abs = tonumber(cur[2])
if math.min(tonumber(cur[1]), abs) <= now then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'i', ARGV[2])
local ttl = math.floor((math.min(tonumber(ARGV[2]), abs) - now) / 1000000)
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1`)

	// Adds a member and extends (never shortens) the set's TTL.
	indexAddScript = redis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`)

	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// addIndexes runs before the record is written, so that a record is never
// stored without the index entries revocation needs.
func (s *RedisStore) addIndexes(ctx context.Context, r Record, ttl int64) error {
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT.
		indexAddScript.Eval(ctx, p, []string{s.subKey(r.Subject)}, r.ID, ttl)
		if r.IdPSessionID != "" {
			indexAddScript.Eval(ctx, p, []string{s.sidKey(r.IdPSessionID)}, r.ID, ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis: index session: %w", err)
	}
	return nil
}

// Create implements Store.
func (s *RedisStore) Create(ctx context.Context, rec Record) error {
	now := s.now()
	ttl := ttlMillis(rec.Expires().Sub(now))
	if ttl == 0 {
		return nil
	}
	if err := s.addIndexes(ctx, rec, ttlMillis(rec.AbsoluteExpiry.Sub(now))); err != nil {
		return err
	}
	args := append([]any{ttl}, recordFields(rec)...)
	n, err := createScript.Run(ctx, s.c, []string{s.recKey(rec.ID)}, args...).Int()
	if err != nil {
		return fmt.Errorf("redis: create session: %w", err)
	}
	if n == 0 {
		return ErrExists
	}
	return nil
}

// Replace implements Store.
func (s *RedisStore) Replace(ctx context.Context, rec Record) error {
	now := s.now()
	ttl := ttlMillis(rec.Expires().Sub(now))
	if ttl == 0 {
		existed, err := s.Delete(ctx, rec.ID)
		if err == nil && !existed {
			err = ErrNotFound
		}
		return err
	}
	if err := s.addIndexes(ctx, rec, ttlMillis(rec.AbsoluteExpiry.Sub(now))); err != nil {
		return err
	}
	args := append([]any{ttl, unixNano(now)}, recordFields(rec)...)
	old, err := replaceScript.Run(ctx, s.c, []string{s.recKey(rec.ID)}, args...).StringSlice()
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("redis: replace session: %w", err)
	}
	if len(old) == 2 {
		_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			if old[0] != rec.Subject {
				p.SRem(ctx, s.subKey(old[0]), rec.ID)
			}
			if old[1] != "" && old[1] != rec.IdPSessionID {
				p.SRem(ctx, s.sidKey(old[1]), rec.ID)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("redis: unindex session: %w", err)
		}
	}
	return nil
}

// Touch implements Store.
func (s *RedisStore) Touch(ctx context.Context, id string, lastSeen, idleExpiry time.Time) error {
	n, err := touchScript.Run(ctx, s.c, []string{s.recKey(id)}, unixNano(lastSeen), unixNano(idleExpiry), unixNano(s.now())).Int()
	if err != nil {
		return fmt.Errorf("redis: extend session: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Get implements Store.
func (s *RedisStore) Get(ctx context.Context, id string) (Record, error) {
	m, err := s.c.HGetAll(ctx, s.recKey(id)).Result()
	if err != nil {
		return Record{}, fmt.Errorf("redis: get session: %w", err)
	}
	if len(m) == 0 {
		return Record{}, ErrNotFound
	}
	r, err := decodeRecord(id, m)
	if err != nil {
		return Record{}, err
	}
	if !s.now().Before(r.Expires()) {
		return Record{}, errExpiredRecord
	}
	return r, nil
}

// Delete implements Store.
func (s *RedisStore) Delete(ctx context.Context, id string) (bool, error) {
	vals, err := s.c.HMGet(ctx, s.recKey(id), fSub, fSID, fIdle, fAbs).Result()
	if err != nil {
		return false, fmt.Errorf("redis: delete session: %w", err)
	}
	sub, ok := vals[0].(string)
	if !ok {
		return false, nil
	}
	sid, _ := vals[1].(string)
	var del *redis.IntCmd
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, s.recKey(id))
		p.SRem(ctx, s.subKey(sub), id)
		if sid != "" {
			p.SRem(ctx, s.sidKey(sid), id)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("redis: delete session: %w", err)
	}
	return del.Val() == 1 && s.liveFields(vals[2], vals[3]), nil
}

// liveFields reports whether idle and absolute expiry (ns strings) are both
// after now.
func (s *RedisStore) liveFields(idle, abs any) bool {
	now := unixNano(s.now())
	for _, v := range []any{idle, abs} {
		str, _ := v.(string)
		n, err := strconv.ParseInt(str, 10, 64)
		if err != nil || n <= now {
			return false
		}
	}
	return true
}

// members loads the records an index set names. Stale members (record gone
// or moved to another subject/sid) are removed from the set.
func (s *RedisStore) members(ctx context.Context, setKey string, match func(Record) bool) ([]Record, error) {
	ids, err := s.c.SMembers(ctx, setKey).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: read session index: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.recKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis: read sessions: %w", err)
	}
	now := s.now()
	var out []Record
	var stale []any
	for i, cmd := range cmds {
		m := cmd.Val()
		if len(m) == 0 {
			stale = append(stale, ids[i])
			continue
		}
		r, err := decodeRecord(ids[i], m)
		if err != nil {
			return nil, err
		}
		if !match(r) {
			stale = append(stale, ids[i])
			continue
		}
		if now.Before(r.Expires()) {
			out = append(out, r)
		}
	}
	if len(stale) > 0 {
		if err := s.c.SRem(ctx, setKey, stale...).Err(); err != nil {
			return nil, fmt.Errorf("redis: clean session index: %w", err)
		}
	}
	return out, nil
}

// ListBySubject implements Store.
func (s *RedisStore) ListBySubject(ctx context.Context, sub string) ([]Record, error) {
	return s.members(ctx, s.subKey(sub), func(r Record) bool { return r.Subject == sub })
}

func (s *RedisStore) deleteRecords(ctx context.Context, recs []Record) ([]string, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	dels := make([]*redis.IntCmd, len(recs))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range recs {
			dels[i] = p.Del(ctx, s.recKey(r.ID))
			p.SRem(ctx, s.subKey(r.Subject), r.ID)
			if r.IdPSessionID != "" {
				p.SRem(ctx, s.sidKey(r.IdPSessionID), r.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis: delete sessions: %w", err)
	}
	ids := make([]string, 0, len(recs))
	for i, r := range recs {
		if dels[i].Val() == 1 {
			ids = append(ids, r.ID)
		}
	}
	return ids, nil
}

// DeleteBySubject implements Store.
func (s *RedisStore) DeleteBySubject(ctx context.Context, sub string) ([]string, error) {
	recs, err := s.members(ctx, s.subKey(sub), func(r Record) bool { return r.Subject == sub })
	if err != nil {
		return nil, err
	}
	return s.deleteRecords(ctx, recs)
}

// DeleteByIdPSession implements Store.
func (s *RedisStore) DeleteByIdPSession(ctx context.Context, sid string) ([]string, error) {
	if sid == "" {
		return nil, nil
	}
	recs, err := s.members(ctx, s.sidKey(sid), func(r Record) bool { return r.IdPSessionID == sid })
	if err != nil {
		return nil, err
	}
	return s.deleteRecords(ctx, recs)
}

// Acquire implements Store (SET NX PX: the key expires in redis time).
func (s *RedisStore) Acquire(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	ok, err := s.c.SetNX(ctx, s.kvKey(key), token, time.Duration(ttlMillis(ttl))*time.Millisecond).Result()
	if err != nil {
		return false, fmt.Errorf("redis: acquire %s: %w", key, err)
	}
	return ok, nil
}

// Release implements Store.
func (s *RedisStore) Release(ctx context.Context, key, token string) error {
	if err := releaseScript.Run(ctx, s.c, []string{s.kvKey(key)}, token).Err(); err != nil {
		return fmt.Errorf("redis: release %s: %w", key, err)
	}
	return nil
}

// Take implements Taker (GETDEL: one command, one key).
func (s *RedisStore) Take(ctx context.Context, key string) (string, bool, error) {
	v, err := s.c.GetDel(ctx, s.kvKey(key)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("redis: take %s: %w", key, err)
	}
	return v, true, nil
}

// Ping implements Store.
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: ping: %w", err)
	}
	return nil
}

// Close implements Store.
func (s *RedisStore) Close() error { return s.c.Close() }

// Client is the store's Redis client, for other state kept on the same
// server (the shared rate limiter). Closing the store closes it.
func (s *RedisStore) Client() redis.UniversalClient { return s.c }

// Publish implements Notifier.
func (s *RedisStore) Publish(ctx context.Context, msg string) error {
	if err := s.c.Publish(ctx, s.channel, msg).Err(); err != nil {
		return fmt.Errorf("redis: publish invalidation: %w", err)
	}
	return nil
}

// subscriptionCheck is how long the subscription may be silent before it is
// pinged; a ping left unanswered for as long again counts as a broken
// connection (which a half-open TCP connection would otherwise hide).
const subscriptionCheck = 5 * time.Second

// Subscribe implements Notifier. It resubscribes after any failure (waiting
// 100ms, doubling up to 1s while the server stays away) and calls onReset
// each time, since messages may have been lost meanwhile.
func (s *RedisStore) Subscribe(ctx context.Context, onMessage func(string), onReset func()) {
	const minWait, maxWait = 100 * time.Millisecond, time.Second
	wait := minWait
	for ctx.Err() == nil {
		ps := s.c.Subscribe(ctx, s.channel)
		// Closing the PubSub is what interrupts a blocked read.
		stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
		subscribed, err := s.receive(ctx, ps, onMessage, onReset)
		stop()
		_ = ps.Close()
		if ctx.Err() != nil {
			return
		}
		onReset()
		if subscribed {
			wait = minWait
		}
		s.log.Debug("session invalidation subscription broke; resubscribing", "error", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// receive delivers messages until the subscription fails; subscribed
// reports whether it was established at all.
func (s *RedisStore) receive(ctx context.Context, ps *redis.PubSub, onMessage func(string), onReset func()) (subscribed bool, err error) {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, subscriptionCheck)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged && ctx.Err() == nil {
				pinged = true
				if err := ps.Ping(ctx); err != nil {
					return subscribed, err
				}
				continue
			}
			return subscribed, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				subscribed = true
				onReset() // (re)subscribed: anything before may have been missed
			}
		case *redis.Message:
			onMessage(m.Payload)
		}
	}
}

// reloadSlotsOnError makes a cluster client reload its slot map whenever a
// command or pipeline fails. go-redis follows MOVED replies, but a command
// to a primary that died keeps dialling it until the next periodic reload,
// long after its replica has taken over; the Cluster primary-loss test
// through the gateway found requests refused for 10s and more. The reload
// is lazy and coalesced, so a burst of failures costs one CLUSTER SLOTS.
type reloadSlotsOnError struct{ c *redis.ClusterClient }

func (h reloadSlotsOnError) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadSlotsOnError) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.failed(ctx, err)
		return err
	}
}

func (h reloadSlotsOnError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.failed(ctx, err)
		return err
	}
}

func (h reloadSlotsOnError) failed(ctx context.Context, err error) {
	if err != nil && !errors.Is(err, redis.Nil) {
		h.c.ReloadState(ctx)
	}
}
