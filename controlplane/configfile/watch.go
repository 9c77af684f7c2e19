package configfile

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Debounce is how long the watcher waits after the last file event before
// reloading: editors and `kubectl apply` write in several steps (truncate,
// write, rename, chmod) and one reload should see the final file. It is
// far below the one-second budget for pushing a change.
const Debounce = 100 * time.Millisecond

// Watcher reports changes to a set of files. It watches their directories,
// not the files, because editors and Kubernetes replace files by rename
// (ConfigMaps swap a "..data" symlink), which a watch on the old inode would
// miss.
type Watcher struct {
	fs *fsnotify.Watcher

	mu    sync.Mutex
	files map[string]bool // absolute paths
	dirs  map[string]bool
}

// NewWatcher watches nothing until Follow is called.
func NewWatcher() (*Watcher, error) {
	fs, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	return &Watcher{fs: fs, files: map[string]bool{}, dirs: map[string]bool{}}, nil
}

// Follow adds files to the watched set; it is safe to call while Run runs.
func (w *Watcher) Follow(files ...string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return fmt.Errorf("watch %s: %w", f, err)
		}
		w.files[abs] = true
		dir := filepath.Dir(abs)
		if w.dirs[dir] {
			continue
		}
		if err := w.fs.Add(dir); err != nil {
			return fmt.Errorf("watch %s: %w", dir, err)
		}
		w.dirs[dir] = true
	}
	return nil
}

// concerns reports whether an event may have changed a followed file.
func (w *Watcher) concerns(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := ev.Name
	// Kubernetes updates a mounted ConfigMap or Secret by swapping the
	// "..data" symlink; the file names seen by the reader never change.
	if strings.HasPrefix(filepath.Base(name), "..") {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.files[name]
}

// Run calls changed once per burst of events on followed files until ctx
// ends. changed runs on Run's goroutine, so reloads never overlap.
func (w *Watcher) Run(ctx context.Context, changed func()) (err error) {
	defer func() {
		if cerr := w.fs.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("watch: close: %w", cerr)
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fs.Events:
			if !ok {
				return nil
			}
			if w.concerns(ev) {
				timer.Reset(Debounce)
			}
		case werr, ok := <-w.fs.Errors:
			if !ok {
				return nil
			}
			// An overflow means events were lost: reload to be safe.
			if errors.Is(werr, fsnotify.ErrEventOverflow) {
				timer.Reset(Debounce)
				continue
			}
			return fmt.Errorf("watch: %w", werr)
		case <-timer.C:
			changed()
		}
	}
}
