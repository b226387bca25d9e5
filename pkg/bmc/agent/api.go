package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/metalforge/metalforge/pkg/api"
)

// apiClient is the agent's side of metal-api's REST routes for partition components.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

// apiError is metal-api's error body.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (c *apiClient) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e apiError
		if json.Unmarshal(raw, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, e.Message)
		}
		return fmt.Errorf("%s %s: status %d", method, path, resp.StatusCode)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

func (c *apiClient) pending(ctx context.Context, partition string) ([]*api.BMCCommand, error) {
	var list struct {
		Items []*api.BMCCommand `json:"items"`
	}
	err := c.call(ctx, http.MethodGet, "/v1/bmc/command?partition="+url.QueryEscape(partition), nil, &list)
	return list.Items, err
}

func (c *apiClient) done(ctx context.Context, id string, d api.BMCCommandDone) error {
	return c.call(ctx, http.MethodPost, "/v1/bmc/command/"+url.PathEscape(id)+"/done", d, nil)
}

func (c *apiClient) report(ctx context.Context, machineID string, r api.BMCReport) error {
	return c.call(ctx, http.MethodPost, "/v1/machine/"+url.PathEscape(machineID)+"/bmc", r, nil)
}
