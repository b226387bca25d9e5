package boot

import (
	"log/slog"
	"net/http"
	"os"
	"time"
)

// files serves regular files below root, named by the request's path value key, with range
// requests, conditional requests and HEAD (http.ServeContent). os.Root refuses names that leave
// the directory, also through symlinks; directories are not listed.
func files(root *os.Root, key string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := root.Open(r.PathValue(key))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", st.ModTime(), f)
	})
}

// accessLog logs every request at debug level.
func accessLog(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			log.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
				"bytes", rec.bytes, "remote", r.RemoteAddr, "duration", time.Since(start))
		}()
		next.ServeHTTP(rec, r)
	})
}

// recorder notes the status and size of a response; Unwrap keeps http.ResponseController
// (flushing a streamed image) working.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
