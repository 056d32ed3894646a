package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// A shutdown signal arriving while a slow request is in flight lets it finish,
// refuses new connections, and then Run returns nil.
func TestGracefulShutdownFinishesInFlightRequest(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	s, err := New(Options{Public: slow, Admin: http.NotFoundHandler(), PublicListener: listen(t), AdminListener: listen(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()

	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + s.PublicAddr() + "/")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{string(b), err}
	}()
	<-started
	cancel() // the signal
	select {
	case err := <-runErr:
		t.Fatalf("Run returned before the in-flight request finished: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	r := <-res
	if r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: body %q err %v", r.body, r.err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := http.Get("http://" + s.PublicAddr() + "/"); err == nil {
		t.Fatal("new connections must be refused after shutdown")
	}
}

func TestBadAddressIsReported(t *testing.T) {
	_, err := New(Options{PublicAddr: "256.0.0.1:99999", AdminAddr: "127.0.0.1:0"})
	if err == nil {
		t.Fatal("want error")
	}
}

func TestReadyzNamesFailingDependency(t *testing.T) {
	mux := http.NewServeMux()
	HealthHandlers(mux, []Check{
		{Name: "store", Fn: func(context.Context) error { return nil }},
		{Name: "idp", Fn: func(context.Context) error { return errors.New("dial tcp 10.0.0.1: secret-ish detail") }},
	})
	s, err := New(Options{Public: http.NotFoundHandler(), Admin: mux, PublicListener: listen(t), AdminListener: listen(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	resp, err := http.Get("http://" + s.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(b) != `{"checks":{"idp":"unavailable","store":"ok"},"ready":false}`+"\n" {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	resp, err = http.Get("http://" + s.AdminAddr() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestDrainAnswersConnectionCloseAndEndsStreamsAtTheTimeout: after the shutdown signal,
// Ready reports draining at once, a request arriving during drain_delay is served with
// Connection: close, and a stream still open at ShutdownTimeout is ended (its handler returns,
// so it can write its record) while Run returns nil.
func TestDrainAnswersConnectionCloseAndEndsStreamsAtTheTimeout(t *testing.T) {
	streaming := make(chan struct{})
	handlerDone := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			defer close(handlerDone)
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			close(streaming)
			<-r.Context().Done() // ended by the shutdown timeout
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	s, err := New(Options{Public: h, Admin: http.NotFoundHandler(), PublicListener: listen(t), AdminListener: listen(t),
		DrainDelay: 300 * time.Millisecond, ShutdownTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	go func() {
		resp, err := http.Get("http://" + s.PublicAddr() + "/stream")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-streaming
	cancel()
	deadline := time.Now().Add(time.Second)
	for s.Ready(context.Background()) == nil {
		if time.Now().After(deadline) {
			t.Fatal("Ready never reported draining")
		}
		time.Sleep(time.Millisecond)
	}
	resp, err := http.Get("http://" + s.PublicAddr() + "/x")
	if err != nil {
		t.Fatalf("a request during drain_delay: %v", err)
	}
	resp.Body.Close()
	if !resp.Close { // the client reads Connection: close into Close
		t.Fatalf("answer during the drain lacks Connection: close: %v", resp.Header)
	}
	select {
	case <-handlerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the open stream was never ended")
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v, want nil after ending the stream", err)
	}
}
