package server

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// After the shutdown signal, Draining turns true at once while the public
// listener keeps answering for DrainDelay; then Run returns and the
// listener refuses connections.
func TestDrainDelayKeepsServingWhileUnready(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	s, err := New(Options{Public: ok, Admin: ok, PublicListener: listen(t), AdminListener: listen(t), DrainDelay: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if s.Draining() {
		t.Fatal("draining before the signal")
	}
	cancel()
	for !s.Draining() {
		time.Sleep(time.Millisecond)
	}
	// A fresh connection during the delay is still served.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + s.PublicAddr() + "/")
	if err != nil {
		t.Fatalf("request during the drain delay: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d during the drain delay", resp.StatusCode)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("http://" + s.PublicAddr() + "/"); err == nil {
		t.Fatal("the listener still answers after Run returned")
	}
}
