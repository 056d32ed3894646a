package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBodyReadTimeoutCutsAStalledBody: a handler reading a body that stops arriving gets
// ErrBodyTimeout once the idle timeout passes, and BodyTimedOut says so.
func TestBodyReadTimeoutCutsAStalledBody(t *testing.T) {
	got := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
		if BodyTimedOut(r, err) {
			w.WriteHeader(http.StatusRequestTimeout)
		}
	})
	s, err := New(Options{Public: h, Admin: http.NotFoundHandler(), PublicListener: listen(t), AdminListener: listen(t),
		BodyReadTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	c, err := net.Dial("tcp", s.PublicAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
	select {
	case err := <-got:
		if err != ErrBodyTimeout {
			t.Fatalf("read error %v, want ErrBodyTimeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled body was never cut")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("response %v %v", resp, err)
	}
}

// TestConnectionCapRefusesQuicklyAndSparesOpenConnections: beyond MaxConnections a new
// connection gets an immediate 503 and is closed; the connections already open keep working.
func TestConnectionCapRefusesQuicklyAndSparesOpenConnections(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	s, err := New(Options{Public: h, Admin: http.NotFoundHandler(), PublicListener: listen(t), AdminListener: listen(t), MaxConnections: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	control := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	get := func() error {
		resp, err := control.Get("http://" + s.PublicAddr() + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok" {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", s.PublicAddr())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	for i := range 5 {
		c, err := net.Dial("tcp", s.PublicAddr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(b), "HTTP/1.1 503") || !strings.Contains(string(b), "too_many_connections") {
			t.Fatalf("connection %d beyond the cap: %q %v", i, b, err)
		}
		if err := get(); err != nil {
			t.Fatalf("the open control connection failed while others were refused: %v", err)
		}
	}
	if st := s.Stats(); st.OpenConnections != 3 || st.RefusedConnections != 5 {
		t.Fatalf("stats %+v", st)
	}
}
