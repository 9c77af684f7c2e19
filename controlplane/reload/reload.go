// Package reload keeps the served snapshot in step with the config file:
// load, translate, publish, and on any error keep the last good snapshot.
package reload

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
)

// Publisher serves a resource set; xds.Server is one.
type Publisher interface {
	Publish(ctx context.Context, res *translator.Resources) (version uint64, changed bool, err error)
}

// Reloader applies the config file at Path.
type Reloader struct {
	Path      string
	Publisher Publisher
	Metrics   *admin.Metrics
	Log       *slog.Logger
	// OnApplied, if set, runs after each successful publish (readiness).
	OnApplied func(version uint64)
	// Apply, when set, takes each new valid config instead of it being
	// translated and published here: the Kubernetes source merges it with
	// what the API server holds and publishes itself.
	Apply func(ctx context.Context, c *spec.Config) error
	// Observe, if set, gets each new valid config once it is served, even
	// when its resources did not change: the Envoy Gateway extension server
	// reads settings (fallbacks, the body limit) that reach no resource of
	// this control plane. With Apply set, the Kubernetes source publishes
	// and its builds are observed instead (kube.Options.OnPublished).
	Observe func(*spec.Config) error

	mu      sync.Mutex
	digest  [sha256.Size]byte
	applied bool
}

// Reload applies the file once. An invalid file is refused with one log
// line naming every problem; whatever was served before keeps serving.
func (r *Reloader) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	loaded, err := configfile.Load(r.Path)
	if err != nil {
		return r.reject(err)
	}
	if r.applied && loaded.Digest == r.digest {
		r.Metrics.Reload(admin.ReloadUnchanged)
		return nil
	}
	if r.Apply != nil {
		if err := r.Apply(ctx, loaded.Config); err != nil {
			return r.reject(err)
		}
		r.digest, r.applied = loaded.Digest, true
		r.Metrics.Reload(admin.ReloadApplied)
		r.Log.Info("config applied", "path", r.Path, "took", time.Since(start).Round(time.Microsecond))
		return nil
	}
	res, err := translator.Translate(loaded.Config)
	if err != nil {
		return r.reject(err)
	}
	version, changed, err := r.Publisher.Publish(ctx, res)
	if err != nil {
		return r.reject(err)
	}
	if r.Observe != nil {
		if err := r.Observe(loaded.Config); err != nil {
			return r.reject(err)
		}
	}
	r.digest, r.applied = loaded.Digest, true
	if !changed {
		r.Metrics.Reload(admin.ReloadUnchanged)
		r.Log.Info("config reloaded, resources unchanged", "path", r.Path, "version", version)
		return nil
	}
	r.Metrics.Reload(admin.ReloadApplied)
	r.Log.Info("config applied", "path", r.Path, "version", version,
		"listeners", len(res.Listeners), "routes", len(res.Routes), "clusters", len(res.Clusters),
		"took", time.Since(start).Round(time.Microsecond))
	if r.OnApplied != nil {
		r.OnApplied(version)
	}
	return nil
}

func (r *Reloader) reject(err error) error {
	r.Metrics.Reload(admin.ReloadRejected)
	r.Log.Error("config rejected; still serving the last good snapshot", "path", r.Path, "err", err)
	return fmt.Errorf("reload %s: %w", r.Path, err)
}

// Watch reloads on every change to the config file, until ctx ends. Errors of single reloads are logged and counted, not
// returned: the watch goes on.
func (r *Reloader) Watch(ctx context.Context) error {
	w, err := configfile.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Follow(r.Path); err != nil {
		return err
	}
	// Catch an edit made between the caller's first load and the watch
	// starting; an unchanged file costs one read. A failure is logged and
	// counted by Reload, and the watch still starts.
	if err := r.Reload(ctx); err != nil {
		r.Log.Debug("initial watch reload failed", "err", err)
	}
	return w.Run(ctx, func() {
		if err := r.Reload(ctx); err != nil {
			// Already logged as an error and counted by Reload.
			r.Log.Debug("reload after a file event failed", "err", err)
		}
	})
}
