package app

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
	"github.com/authsidecar/authsidecar/internal/logtest"
)

// otlpReceiver is an OTLP/HTTP trace receiver (protobuf), as a collector
// serves it on :4318/v1/traces.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []recvSpan
	// values are every attribute value and name exported, resource's too.
	values []string
}

type recvSpan struct {
	name, trace, id, parent string
	kind                    string
	attrs                   map[string]string
	links                   []string // linked span ids
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf on /v1/traces", http.StatusBadRequest)
		return
	}
	var req collector.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.record(&req)
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collector.ExportTraceServiceResponse{})
	w.Write(out)
}

// Export is the receiver over OTLP/gRPC.
func (g grpcReceiver) Export(_ context.Context, req *collector.ExportTraceServiceRequest) (*collector.ExportTraceServiceResponse, error) {
	g.o.record(req)
	return &collector.ExportTraceServiceResponse{}, nil
}

type grpcReceiver struct {
	collector.UnimplementedTraceServiceServer
	o *otlpReceiver
}

func (o *otlpReceiver) record(req *collector.ExportTraceServiceRequest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		o.values = append(o.values, attrValues(rs.Resource.GetAttributes())...)
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := recvSpan{name: s.Name, trace: hex.EncodeToString(s.TraceId), id: hex.EncodeToString(s.SpanId),
					parent: hex.EncodeToString(s.ParentSpanId), kind: s.Kind.String(), attrs: map[string]string{}}
				for _, a := range s.Attributes {
					sp.attrs[a.Key] = anyValue(a.Value)
				}
				for _, l := range s.Links {
					sp.links = append(sp.links, hex.EncodeToString(l.SpanId))
					o.values = append(o.values, attrValues(l.Attributes)...)
				}
				for _, e := range s.Events {
					o.values = append(o.values, append(attrValues(e.Attributes), e.Name)...)
				}
				o.values = append(o.values, append(attrValues(s.Attributes), s.Name, s.Status.GetMessage())...)
				o.spans = append(o.spans, sp)
			}
		}
	}
}

func anyValue(v *common.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *common.AnyValue_StringValue:
		return x.StringValue
	case *common.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *common.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	default:
		return fmt.Sprint(x)
	}
}

func attrValues(attrs []*common.KeyValue) []string {
	var out []string
	for _, a := range attrs {
		out = append(out, a.Key, anyValue(a.Value))
	}
	return out
}

func (o *otlpReceiver) named(name string) []recvSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []recvSpan
	for _, s := range o.spans {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

func (o *otlpReceiver) byID(id string) (recvSpan, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.spans {
		if s.id == id {
			return s, true
		}
	}
	return recvSpan{}, false
}

// childrenOf are the spans whose parent is id, by name.
func (o *otlpReceiver) childrenOf(id string) map[string][]recvSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string][]recvSpan{}
	for _, s := range o.spans {
		if s.parent == id {
			out[s.name] = append(out[s.name], s)
		}
	}
	return out
}

const tracedClientSecret = "client-secret-never-exported"

// Traces, exported over OTLP/HTTP to a receiver in the test: a first call
// continues the caller's traceparent, with the token refresh (and its token
// request) and the upstream call as children; a 401 adds the refresh and
// the replay; a replica waiting for another's lock records the wait;
// callers that waited for a refresh another call started link to it. No
// exported name or value holds a token, a secret or a query value, and the
// vendor never sees a traceparent.
func TestTracesOfCallsRefreshesLockWaitsAndReplays(t *testing.T) {
	recv := &otlpReceiver{}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", serve(t, recv))
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", "authsidecar-test")

	clock := fakeclock.New(time.Now())
	vendor, _ := newCredVendor(t, clock)
	vendor.configure("refresh_token", basicClient, nil, tracedClientSecret, "seed-own")
	var sawTraceparent sync.Map
	slow := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Traceparent") != "" {
			sawTraceparent.Store(r.URL.Path, true)
		}
		if r.URL.Path == "/token" {
			time.Sleep(300 * time.Millisecond) // long enough for a sibling to find the lock taken
		}
		vendor.ServeHTTP(w, r)
	}))
	env := map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": slow, "API_TOKEN_URL": slow + "/token",
		"API_CLIENT_ID": "cid", "API_CLIENT_SECRET": tracedClientSecret, "API_REFRESH_TOKEN": "seed-own"}
	rs := startRedis(t)
	env["REDIS_URL"], env["TOKEN_ENCRYPTION_KEY"] = "redis://"+rs.addr(), testKey
	a, first := sidecar(t, env, clock)
	b, second := sidecar(t, env, clock)

	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	traced := func(url string) *http.Request {
		req, _ := http.NewRequest("GET", url+"/api/x?password=hunter2-query-value", nil)
		req.Header.Set("Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
		return req
	}
	// The first calls: four at replica A and one at B, at once. One
	// refresh runs per replica; B waits for A's lock.
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := first
			if i == 4 {
				time.Sleep(50 * time.Millisecond) // A takes the lock first
				url = second
			}
			resp, err := http.DefaultClient.Do(traced(url))
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("first calls: %v %v", resp, err)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	// A 401: the vendor revoked the token.
	clock.Advance(6 * time.Second)
	vendor.revokeAll(false)
	resp, err := http.DefaultClient.Do(traced(first))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after a 401: %v %v", resp, err)
	}
	resp.Body.Close()
	a.Close()
	b.Close() // both flush their spans

	servers := recv.named("proxy api")
	if len(servers) != 6 {
		t.Fatalf("%d server spans, want 6", len(servers))
	}
	refreshes := 0
	for _, s := range servers {
		if s.trace != callerTrace || s.parent != callerSpan || s.kind != "SPAN_KIND_SERVER" || s.attrs["authsidecar.route"] != "api" {
			t.Errorf("server span %+v does not continue the caller's trace", s)
		}
		children := recv.childrenOf(s.id)
		if len(children["upstream"]) != 1 || children["upstream"][0].kind != "SPAN_KIND_CLIENT" {
			t.Errorf("server span without its upstream call: %v", children)
		}
		for _, r := range children["token refresh"] {
			refreshes++
			if len(recv.childrenOf(r.id)["token request"])+len(recv.childrenOf(r.id)["fleet lock wait"]) == 0 {
				t.Errorf("a refresh with neither a token request nor a lock wait under it")
			}
		}
		if len(children["token refresh"]) == 0 && s.attrs["authsidecar.replayed"] != "true" {
			// It waited for a refresh another call started: linked to it.
			if len(s.links) != 1 {
				t.Errorf("a call that waited for another's refresh has links %v", s.links)
			} else if l, ok := recv.byID(s.links[0]); !ok || l.name != "token refresh" {
				t.Errorf("the link points at %+v", l)
			}
		}
	}
	if refreshes != 3 { // A's first, B's (which waited for A's lock), the 401's
		t.Errorf("%d token refreshes traced, want 3", refreshes)
	}
	if waits := recv.named("fleet lock wait"); len(waits) != 1 {
		t.Errorf("%d lock waits traced, want B's one", len(waits))
	}
	var replayed []recvSpan
	for _, s := range servers {
		if s.attrs["authsidecar.replayed"] == "true" {
			replayed = append(replayed, s)
		}
	}
	if len(replayed) != 1 {
		t.Fatalf("%d replayed calls traced, want 1", len(replayed))
	}
	children := recv.childrenOf(replayed[0].id)
	if len(children["upstream"]) != 1 || children["upstream"][0].attrs["http.response.status_code"] != "401" ||
		len(children["upstream replay"]) != 1 || len(children["token refresh"]) != 1 || replayed[0].attrs["authsidecar.outcome"] != "replayed" {
		t.Errorf("the replayed call's spans: %v, attributes %v", children, replayed[0].attrs)
	}

	secrets := []string{tracedClientSecret, "seed-own", "hunter2"}
	vendor.mu.Lock()
	for tok := range vendor.family {
		secrets = append(secrets, tok)
	}
	vendor.mu.Unlock()
	recv.mu.Lock()
	for _, v := range recv.values {
		for _, s := range secrets {
			if strings.Contains(v, s) {
				t.Errorf("an exported value holds a secret: %q", v)
			}
		}
	}
	recv.mu.Unlock()
	sawTraceparent.Range(func(k, _ any) bool {
		t.Errorf("the vendor saw a traceparent on %v", k)
		return true
	})
}

// A traced call's log line carries its trace and span ids; with tracing
// off, a call costs no span and its line has no ids; FORWARD_TRACEPARENT
// lets the vendor see the upstream span as the parent.
func TestTracedLogLinesAndForwardedTraceparent(t *testing.T) {
	recv := &otlpReceiver{}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", serve(t, recv))
	var seen sync.Map
	upstream := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store("traceparent", r.Header.Get("Traceparent"))
	}))
	cfg, err := config.LoadFrom(map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": upstream, "API_ACCESS_TOKEN": "tok",
		"FORWARD_TRACEPARENT": "true"})
	if err != nil {
		t.Fatal(err)
	}
	log, logs := logtest.New()
	a, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	side := serve(t, a.Handler())
	req, _ := http.NewRequest("GET", side+"/api/x", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	logs.WaitFor(t, `"msg":"proxied"`)
	a.Close()
	server := recv.named("proxy api")
	up := recv.named("upstream")
	if len(server) != 1 || len(up) != 1 {
		t.Fatalf("spans: %d server, %d upstream", len(server), len(up))
	}
	if want := `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"` + server[0].id + `"`; !strings.Contains(logs.String(), want) {
		t.Errorf("the call's log line lacks %s:\n%s", want, logs.String())
	}
	got, _ := seen.Load("traceparent")
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + up[0].id + "-01"; got != want {
		t.Errorf("the vendor saw traceparent %q, want %q (the upstream span)", got, want)
	}

	// Off: no endpoint, no spans, no ids; the caller's traceparent is
	// removed unless forwarded.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	cfg.ForwardTraceparent = false
	log, logs = logtest.New()
	if a, err = New(cfg, log); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	side = serve(t, a.Handler())
	req2, _ := http.NewRequest("GET", side+"/api/x", nil)
	req2.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if resp, err = http.DefaultClient.Do(req2); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	logs.WaitFor(t, `"msg":"proxied"`)
	if strings.Contains(logs.String(), "trace_id") {
		t.Errorf("tracing off, yet a log line has a trace id: %s", logs.String())
	}
	if got, _ := seen.Load("traceparent"); got != "" {
		t.Errorf("the vendor saw the caller's traceparent %q", got)
	}
}

// OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports the same spans over OTLP/gRPC.
func TestTracesOverGRPC(t *testing.T) {
	recv := &otlpReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collector.RegisterTraceServiceServer(srv, grpcReceiver{o: recv})
	go srv.Serve(ln)
	defer srv.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	upstream := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	a, side := sidecar(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": upstream, "API_ACCESS_TOKEN": "tok"}, nil)
	call(t, "GET", side+"/api/x", nil, nil)
	a.Close()
	server, up := recv.named("proxy api"), recv.named("upstream")
	if len(server) != 1 || len(up) != 1 || up[0].parent != server[0].id {
		t.Fatalf("spans over gRPC: %d server, %d upstream", len(server), len(up))
	}
}
