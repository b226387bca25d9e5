package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/fabric"
)

// client is the agent's side of the metal-api REST routes for switches.
type client struct {
	base  string
	token string
	http  *http.Client
}

// statusError is a non-2xx answer.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return fmt.Sprintf("metal-api: %d %s", e.code, e.msg) }

func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.base, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e api.Error
		if json.Unmarshal(raw, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return &statusError{code: resp.StatusCode, msg: e.Message}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

func (c *client) register(ctx context.Context, sw *api.Switch) error {
	if err := c.do(ctx, http.MethodPost, "/v1/switch/register", sw, nil); err != nil {
		return fmt.Errorf("register switch: %w", err)
	}
	return nil
}

func (c *client) desired(ctx context.Context, id string) (*fabric.SwitchDesired, error) {
	var d fabric.SwitchDesired
	if err := c.do(ctx, http.MethodGet, "/v1/switch/"+url.PathEscape(id)+"/desired", nil, &d); err != nil {
		return nil, fmt.Errorf("get desired state: %w", err)
	}
	return &d, nil
}

func (c *client) sync(ctx context.Context, id string, r *fabric.SwitchSyncReport) error {
	if err := c.do(ctx, http.MethodPost, "/v1/switch/"+url.PathEscape(id)+"/sync", r, nil); err != nil {
		return fmt.Errorf("report sync: %w", err)
	}
	return nil
}
