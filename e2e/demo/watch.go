package demo

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// followEdits keeps the control plane's copy in step with the file the
// user edits (docs/deploy.md tells them to edit e2e/demo/controlplane.yaml):
// every change of src is rewritten to the simulators' addresses and written
// to dst, which the control plane watches. Editors that replace the file
// (write a temporary, rename) are followed by watching the directory.
func followEdits(ctx context.Context, src, dst string, rewrite func([]byte) []byte, log *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(filepath.Dir(src)); err != nil {
		w.Close()
		return err
	}
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-w.Errors:
				log.Warn("demo: watching the config", "error", err)
			case ev := <-w.Events:
				if filepath.Clean(ev.Name) != filepath.Clean(src) || ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) == 0 {
					continue
				}
				raw, err := os.ReadFile(src)
				if err != nil {
					continue // mid-rename: the next event has the file
				}
				if err := writeAtomic(dst, rewrite(raw)); err != nil {
					log.Error("demo: passing the edit on", "error", err)
					continue
				}
				log.Info("demo: config edited; the control plane applies it", "file", src)
			}
		}
	}()
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
