package hostxds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// pushTimeout bounds one snapshot push: envoyhost parses every new filter
// config (calls into Go) before it answers.
const pushTimeout = 30 * time.Second

// pusher hands snapshots to envoyhost's admin endpoint.
type pusher struct {
	url    string
	client *http.Client
}

func newPusher(admin string) *pusher {
	return &pusher{url: "http://" + admin + "/envoyhost/config", client: &http.Client{Timeout: pushTimeout}}
}

// send pushes snap; envoyhost applies it whole or answers why not.
func (p *pusher) send(ctx context.Context, snap *hostSnapshot) error {
	body, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("hostxds: envoyhost: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("envoyhost refused the config: %s", bytes.TrimSpace(msg))
	}
	return nil
}
