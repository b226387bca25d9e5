package cache

import (
	"errors"
	"net/http"
	"os"
	"strconv"
	"sync"
)

// fill is one download in progress, shared by every request for the image.
type fill struct {
	tmp string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	header  bool          // the upstream answered 200; size is known
	size    int64         // -1 when the upstream sent no length
	written int64
	done    bool
	err     error
}

func newFill(tmp string) *fill {
	return &fill{tmp: tmp, changed: make(chan struct{}), size: -1}
}

func (f *fill) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fill) started(size int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.header, f.size = true, size
	f.notifyLocked()
}

func (f *fill) advance(written int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.written = written
	f.notifyLocked()
}

func (f *fill) finish(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done, f.err = true, err
	f.notifyLocked()
}

// fillState is a snapshot of a fill and the channel that announces the next change.
type fillState struct {
	header        bool
	size, written int64
	done          bool
	err           error
	changed       <-chan struct{}
}

func (f *fill) state() fillState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fillState{f.header, f.size, f.written, f.done, f.err, f.changed}
}

// await waits until cond holds for the fill, or the request ends (false).
func (f *fill) await(r *http.Request, cond func(fillState) bool) (fillState, bool) {
	for {
		st := f.state()
		if cond(st) {
			return st, true
		}
		select {
		case <-st.changed:
		case <-r.Context().Done():
			return st, false
		}
	}
}

// follow answers a request from a download in progress: a plain GET streams the bytes as they
// arrive; a range request (and any request once the download is over) waits for the complete file.
func (c *Cache) follow(w http.ResponseWriter, r *http.Request, a *attachment, path string) {
	st, ok := a.await(r, func(s fillState) bool { return s.header || s.done })
	if !ok {
		return
	}
	if st.done && st.err != nil && !st.header {
		upstreamFailed(w, st.err)
		return
	}
	if st.done || r.Header.Get("Range") != "" {
		if st, ok = a.await(r, func(s fillState) bool { return s.done }); !ok {
			return
		}
		if st.err != nil {
			upstreamFailed(w, st.err)
			return
		}
		f, err := os.Open(path)
		if err != nil {
			http.Error(w, "open image", http.StatusInternalServerError)
			return
		}
		defer f.Close()
		serveFile(w, r, f)
		return
	}

	w.Header().Set("Content-Type", "application/octet-stream")
	if st.size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(st.size, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	buf := make([]byte, 256<<10)
	var off int64
	for {
		st = a.state()
		if off < st.written {
			n, err := a.reader.Read(buf[:min(int64(len(buf)), st.written-off)])
			if err != nil {
				panic(http.ErrAbortHandler) // the body would be short: make the client see it
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			off += int64(n)
			_ = rc.Flush()
			continue
		}
		if st.done {
			if st.err != nil {
				panic(http.ErrAbortHandler)
			}
			return
		}
		select {
		case <-st.changed:
		case <-r.Context().Done():
			return
		}
	}
}

func upstreamFailed(w http.ResponseWriter, err error) {
	var ue upstreamError
	if errors.As(err, &ue) && ue.status == http.StatusNotFound {
		http.Error(w, "image not found", http.StatusNotFound)
		return
	}
	http.Error(w, "image upstream failed", http.StatusBadGateway)
}
