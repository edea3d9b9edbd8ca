package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("dingtalk_stream", parseStreamGlobalOption)
}

// parseStreamGlobalOption turns the global `dingtalk_stream` block into the
// dingtalk_stream app.
func parseStreamGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("dingtalk_stream is given twice")
	}
	var app StreamApp
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "dingtalk_stream", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens. Syntax:
//
//	dingtalk_stream {
//	    api_base <url>
//	    store <backend> {
//	        ...
//	    }
//	    robot <name> {
//	        client_id <AppKey>
//	        secret <AppSecret>
//	        deliver_to <url>
//	        cards_to <url>
//	        events_to <url>
//	        webhook_hosts <host...>
//	        single_connection
//	        lease <duration>
//	    }
//	}
//
// Unknown and repeated subdirectives are errors; only robot may repeat.
func (a *StreamApp) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option's name
	err := eachSubdirectiveOnce(d, map[string]bool{}, func(sub string) (err error) {
		switch sub {
		case "api_base":
			a.APIBase, err = singleArg(d)
		case "store":
			a.StoreRaw, err = unmarshalStoreModule(d)
		case "robot":
			err = a.unmarshalRobot(d)
		default:
			err = d.Errf("unrecognized dingtalk_stream subdirective %q", sub)
		}
		return err
	}, "robot")
	if err != nil {
		return err
	}
	if len(a.Robots) == 0 {
		return d.Err("dingtalk_stream needs at least one robot")
	}
	return nil
}

// unmarshalRobot parses `robot <name> { ... }`.
func (a *StreamApp) unmarshalRobot(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("robot needs a name: robot <name> { ... }")
	}
	r := StreamRobot{Name: d.Val()}
	if d.NextArg() {
		return d.ArgErr()
	}
	for _, other := range a.Robots {
		if other.Name == r.Name {
			return d.Errf("robot %q is configured twice", r.Name)
		}
	}
	err := eachSubdirectiveOnce(d, map[string]bool{}, func(sub string) (err error) {
		switch sub {
		case "client_id":
			r.ClientID, err = singleArg(d)
		case "secret":
			r.Secret, err = secretArg(d)
		case "deliver_to":
			r.DeliverTo, err = singleArg(d)
		case "cards_to":
			r.CardsTo, err = singleArg(d)
		case "events_to":
			r.EventsTo, err = singleArg(d)
		case "webhook_hosts":
			if r.WebhookHosts = d.RemainingArgs(); len(r.WebhookHosts) == 0 {
				err = d.ArgErr()
			}
		case "single_connection":
			r.SingleConnection, err = true, noArgs(d)
		case "lease":
			err = durationArg(d, &r.Lease)
		default:
			err = d.Errf("unrecognized robot subdirective %q", sub)
		}
		return err
	})
	if err != nil {
		return err
	}
	switch {
	case r.ClientID == "" || r.Secret == "":
		return d.Errf("robot %q needs a client_id and a secret", r.Name)
	case r.DeliverTo == "" && r.CardsTo == "" && r.EventsTo == "":
		return d.Errf("robot %q needs deliver_to, cards_to or events_to", r.Name)
	}
	a.Robots = append(a.Robots, r)
	return nil
}
