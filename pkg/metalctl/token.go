package metalctl

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/metalforge/metalforge/pkg/client/metalapi/token"
	"github.com/metalforge/metalforge/pkg/client/metalapi/version"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

func tokenResource() *resource {
	return &resource{
		name: "token", short: "Tokens: API credentials of people and partition components",
		columns: []column{idCol, nameCol, col("ROLE", "role"), col("PROJECT", "projectID"), col("PARTITION", "partitionID"),
			fn("EXPIRES", func(o obj) string { return timestamp(cell(o["expires"])) }), descCol.onlyWide()},
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := c.Token.ListTokensContext(ctx, token.NewListTokensParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		del: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Token.DeleteTokenContext(ctx, token.NewDeleteTokenParams().WithID(id), nil))
		},
		actions: tokenActions,
	}
}

// expiry parses --expires: a duration from now ("720h") or an RFC 3339 time.
func expiry(now time.Time, v string) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("expires %q is not in the future", v)
		}
		return now.Add(d).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("expires %q is neither a duration (720h) nor an RFC 3339 time", v)
	}
	return t, nil
}

func tokenActions(c *cli, r *resource) []*cobra.Command {
	var role, project, partition, name, description, expires string
	create := &cobra.Command{
		Use: "create", Short: "Create a token; its secret is shown once", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			// Built as JSON so that an absent expiry stays absent, whatever type the generator gives it.
			body := map[string]any{"role": role, "projectID": project, "partitionID": partition, "name": name, "description": description}
			if expires != "" {
				t, err := expiry(time.Now(), expires)
				if err != nil {
					return err
				}
				body["expires"] = t.Format(time.RFC3339)
			}
			raw, err := json.Marshal(body)
			if err != nil {
				return err
			}
			tok, err := decode[wire.Token](raw)
			if err != nil {
				return err
			}
			res, err := api.Token.CreateTokenContext(ctxOf(cmd), token.NewCreateTokenParams().WithBody(tok), nil)
			if err != nil {
				return err
			}
			if c.output == "json" || c.output == "yaml" {
				return c.dump(cmd.OutOrStdout(), res.Payload)
			}
			if err := c.print(cmd, res.Payload, r.columns); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "\nSecret (shown only now): %s\n", res.Payload.Secret)
			return err
		},
	}
	f := create.Flags()
	f.StringVar(&role, "role", "", "admin, owner, editor, viewer, service or boot")
	f.StringVar(&project, "project", "", "project of an owner, editor or viewer token")
	f.StringVar(&partition, "partition", "", "partition a service or boot token is limited to")
	f.StringVar(&name, "name", "", "name")
	f.StringVar(&description, "description", "", "description")
	f.StringVar(&expires, "expires", "", "expiry: a duration from now (720h) or an RFC 3339 time; default never")
	_ = create.MarkFlagRequired("role")
	_ = create.RegisterFlagCompletionFunc("role", cobra.FixedCompletions(
		[]cobra.Completion{"admin", "owner", "editor", "viewer", "service", "boot"}, cobra.ShellCompDirectiveNoFileComp))
	return []*cobra.Command{create}
}

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Show the versions of metalctl and metal-api", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			res, err := api.Version.GetVersionContext(ctxOf(cmd), version.NewGetVersionParams())
			if err != nil {
				return fmt.Errorf("metalctl %s: %w", c.cfg.Version, err)
			}
			v := struct {
				Client string        `json:"client"`
				Server *wire.Version `json:"server"`
			}{c.cfg.Version, res.Payload}
			if c.output == "json" || c.output == "yaml" {
				return c.dump(cmd.OutOrStdout(), v)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Client: %s\nServer: %s (store %s)\n", v.Client, v.Server.Version, v.Server.Store)
			return err
		},
	}
}
