package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/extproc"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/router"
	"github.com/inflow-gateway/inflow/filter/split"
)

// loader applies the config file (or, with ecds, the control plane's
// filter config) to the server, keeping the last good config when an edit
// is invalid, as Envoy keeps a listener whose new filter config it
// rejected.
type loader struct {
	path   string
	server *extproc.Server
	log    *slog.Logger
	// pools outlive configs: a reload keeps each pool's metrics, in-flight
	// counts and prefix index, as the filter's config swaps do.
	pools *pool.Manager
	// backends keeps split models' backend health across configs; the
	// ext_proc adapter reads no response, so it never ejects a backend
	// (passive health is the filter's) and splits by weight and priority.
	backends *split.Registry
}

func (l *loader) load() error {
	data, err := os.ReadFile(l.path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// JSON is YAML; YAMLToJSON keeps the key order and the numbers exact.
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("config %s: %w", l.path, err)
	}
	cfg, err := config.Parse(js)
	if err != nil {
		return fmt.Errorf("config %s: %w", l.path, err)
	}
	if err := l.apply(cfg); err != nil {
		return fmt.Errorf("config %s: %w", l.path, err)
	}
	l.log.Info("config applied", "path", l.path, "models", len(cfg.Models), "pools", len(cfg.Pools))
	return nil
}

// apply compiles cfg, whichever source it came from, and serves it.
func (l *loader) apply(cfg *config.Config) error {
	if l.pools == nil {
		l.pools = pool.NewManager()
		l.backends = split.NewRegistry()
	}
	if ignored := cfg.Ignored(); len(ignored) > 0 {
		l.log.Warn("the config is of a newer schema version; ignoring fields this version does not know",
			"version", cfg.Version, "reads_up_to", config.SchemaVersion, "fields", strings.Join(ignored, ", "))
	}
	// The ext_proc adapter reads no response, so it could not remove a
	// usage chunk the client did not ask for: it never asks for one. The
	// response path (usage, token costs, GenAI metrics) is the filter's.
	noUsage := false
	cfg.Usage.RequestUsage = &noUsage
	r, err := router.New(cfg, l.pools, l.backends)
	if err != nil {
		return err
	}
	l.server.Use(r)
	return nil
}

// watch reloads on every change of the file until ctx ends.
func (l *loader) watch(ctx context.Context) error {
	w, err := configfile.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Follow(l.path); err != nil {
		return errors.Join(err, w.Run(canceled(), func() {}))
	}
	return w.Run(ctx, func() {
		if err := l.load(); err != nil {
			l.log.Error("config rejected; serving the previous one", "error", err)
		}
	})
}

// canceled is a done context: running a watcher with it just closes it.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
