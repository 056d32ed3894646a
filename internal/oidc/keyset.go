package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// defaultKeyRefreshInterval bounds how often the IdP's JWKS is fetched
// because a token named a key we do not have.
const defaultKeyRefreshInterval = time.Minute

// keySet verifies JWS signatures with the IdP's published keys (the
// oidc.KeySet interface). go-oidc's RemoteKeySet re-fetches the JWKS for
// every token whose kid it does not know, so each forged back-channel logout
// token (unauthenticated, POSTed by anyone) costs one request to the IdP.
// This one re-fetches at most once per interval, whatever the tokens say;
// concurrent misses share the one fetch. A failed fetch counts too, so an
// unreachable JWKS is not hammered either.
type keySet struct {
	url      string
	client   *http.Client
	now      func() time.Time
	interval time.Duration

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // last fetch attempt; zero: never
	group   singleflight.Group
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, supportedAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	k.mu.Lock()
	keys := k.keys
	k.mu.Unlock()
	if p, ok := verifyWith(jws, keys, kid); ok {
		return p, nil
	}
	keys, err = k.refresh(ctx)
	if err != nil {
		return nil, err
	}
	if p, ok := verifyWith(jws, keys, kid); ok {
		return p, nil
	}
	return nil, errors.New("no published key verifies the signature")
}

// refresh fetches the JWKS unless it was fetched less than interval ago,
// and returns the keys to use.
func (k *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	now := k.now()
	if !k.fetched.IsZero() && now.Before(k.fetched.Add(k.interval)) {
		keys := k.keys
		k.mu.Unlock()
		return keys, nil
	}
	k.fetched = now
	k.mu.Unlock()
	ch := k.group.DoChan("jwks", func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		keys, err := k.fetch(fctx)
		if err != nil {
			return nil, err
		}
		k.mu.Lock()
		k.keys = keys
		k.mu.Unlock()
		return keys, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]jose.JSONWebKey), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the IdP's keys: %w", ctx.Err())
	}
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("build JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the IdP's keys: %w", redactURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch the IdP's keys: jwks_uri answered %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the IdP's keys: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, errors.New("the IdP's jwks_uri did not return a JSON Web Key Set")
	}
	keys := make([]jose.JSONWebKey, 0, len(set.Keys))
	for _, key := range set.Keys {
		if key.Valid() && key.IsPublic() && (key.Use == "" || key.Use == "sig") {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// verifyWith tries the keys the token's kid names (all keys when it names
// none) and returns the verified payload.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) ([]byte, bool) {
	for _, key := range keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		if p, err := jws.Verify(key); err == nil {
			return p, true
		}
	}
	return nil, false
}

// signingAlgs keeps the discovery document's ID token algorithms that we
// support; empty means go-oidc's default (RS256).
func signingAlgs(advertised []string) []string {
	var out []string
	for _, a := range advertised {
		if slices.Contains(supportedAlgs, jose.SignatureAlgorithm(a)) {
			out = append(out, a)
		}
	}
	return out
}
