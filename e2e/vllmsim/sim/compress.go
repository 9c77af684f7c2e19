package sim

import (
	"compress/gzip"
	"net/http"
	"strconv"
	"strings"
)

// encodeResponse wraps w in a gzip encoder when Options.Gzip is set and the
// request accepts gzip; finish must run when the response is written.
func (s *Server) encodeResponse(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, func()) {
	if !s.opts.Gzip || !acceptsGzip(r.Header.Get("Accept-Encoding")) {
		return w, func() {}
	}
	gw := &gzipWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
	return gw, gw.finish
}

// acceptsGzip reports whether an Accept-Encoding value allows gzip
// (RFC 9110 12.5.3: a q of 0 refuses it).
func acceptsGzip(v string) bool {
	for _, part := range strings.Split(v, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if c := strings.ToLower(strings.TrimSpace(coding)); c != "gzip" && c != "x-gzip" && c != "*" {
			continue
		}
		q := 1.0
		if qs, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(qs, 64); err == nil {
				q = f
			}
		}
		return q > 0
	}
	return false
}

// gzipWriter compresses the body; each Flush flushes the compressor too,
// so a stream reaches the client event by event.
type gzipWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	gz      *gzip.Writer
	started bool
}

func (g *gzipWriter) WriteHeader(code int) {
	if !g.started {
		g.started = true
		h := g.Header()
		h.Set("Content-Encoding", "gzip")
		h.Add("Vary", "Accept-Encoding")
		h.Del("Content-Length")
		g.gz = gzip.NewWriter(g.ResponseWriter)
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipWriter) Write(p []byte) (int, error) {
	if !g.started {
		g.WriteHeader(http.StatusOK)
	}
	return g.gz.Write(p)
}

// FlushError is what http.ResponseController calls.
func (g *gzipWriter) FlushError() error {
	if g.gz != nil {
		if err := g.gz.Flush(); err != nil {
			return err
		}
	}
	return g.rc.Flush()
}

func (g *gzipWriter) finish() {
	if g.gz != nil {
		_ = g.gz.Close()
	}
}
