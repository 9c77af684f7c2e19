// Command inflow-demo runs the docker compose demo's stack on this machine,
// without Docker or Envoy: three vLLM simulators (one base model, two LoRA
// adapters, different loads), the control plane serving the compose demo's
// own config (e2e/demo/controlplane.yaml, pool endpoints rewritten from the
// compose addresses to the simulators' loopback ports) and following edits
// of it, and the real inflow.so in the envoyhost ABI test host, which is
// configured over ADS by that control plane as Envoy would be.
//
//	make demo-local                              # or:
//	go run ./e2e/cmd/inflow-demo -listen 127.0.0.1:8080
//	go run ./e2e/cmd/inflow-demo -smoke          # check the stack and exit 0/1
//
// It needs build/out/inflow.so and build/out/envoyhost (make build-filter
// build-host).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/template"
	"time"

	"github.com/inflow-gateway/inflow/e2e/demo"
)

// smokeTimeout bounds the whole -smoke run, start-up included.
const smokeTimeout = 2 * time.Minute

type options struct {
	listen, admin, config string
	smoke                 bool
	verbose               bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("inflow-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "proxy listener ip:port (Envoy's published port in the compose demo)")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:9901", "admin listener ip:port (/stats)")
	fs.StringVar(&o.config, "config", "", "control-plane config (default "+demo.ConfigPath+")")
	fs.BoolVar(&o.smoke, "smoke", false, "send the demo requests, check them, and exit 0 (all passed) or 1")
	fs.BoolVar(&o.verbose, "v", false, "log one line per simulated request (which server served it)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inflow-demo:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "inflow-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) (err error) {
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	dir, err := os.MkdirTemp("", "inflow-demo-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	if o.smoke {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, smokeTimeout)
		defer cancel()
	}
	s, err := demo.Start(ctx, demo.Options{Config: o.config, Listen: o.listen, Admin: o.admin, Dir: dir, Log: log})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	if o.smoke {
		return demo.Smoke(ctx, s, out)
	}
	if err := usage.Execute(out, s); err != nil {
		return err
	}
	<-ctx.Done()
	fmt.Fprintln(out, "stopping")
	return nil
}

// usage is what to try once the stack is up; the same requests work
// against the compose demo on the same port.
var usage = template.Must(template.New("usage").Parse(`
Inflow demo: the real inflow.so in the ABI test host (no Envoy here), configured over xDS
(listener {{.Config.Listener}}, routes, clusters, the filter config over ECDS) by the control plane from
  {{.Watched}}
Edit that file while the demo runs: the change is live within a second (an invalid edit is
refused and logged; the running config stays).
  proxy  http://{{.Host.Addr}}     admin  http://{{.Host.Admin}}/stats
  model servers (vLLM simulators): {{range .Sims.Servers}}{{.Addr}} {{end}}

  curl -s http://{{.Host.Addr}}/v1/models
  curl -s http://{{.Host.Addr}}/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"{{.Config.Base}}","messages":[{"role":"user","content":"Hello"}]}'
  curl -sN http://{{.Host.Addr}}/v1/completions -H 'content-type: application/json' \
    -d '{"model":"{{.Config.Base}}","prompt":"Once upon a time","stream":true,"stream_options":{"include_usage":true}}'
  curl -s http://{{.Host.Addr}}/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"{{.Config.AdapterModel}}","messages":[{"role":"user","content":"My order is late"}]}'   # answered by a LoRA adapter
  curl -s http://{{.Host.Addr}}/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"nope","messages":[{"role":"user","content":"hi"}]}'                           # 404, OpenAI-shaped
  curl -s http://{{.Host.Admin}}/stats | grep inflow_
  curl -s http://{{.GenAIMetrics}}/metrics | grep gen_ai_       # GenAI metrics, served by the filter

  python: OpenAI(base_url="http://{{.Host.Addr}}/v1", api_key="unused")

Ctrl-C stops everything.
`))
