package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("dingtalk_reply", parseReplyCaddyfile)
	// A reply answers, like respond; inside a route the written order wins.
	httpcaddyfile.RegisterDirectiveOrder("dingtalk_reply", httpcaddyfile.Before, "respond")
}

func parseReplyCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var rh Reply
	err := rh.UnmarshalCaddyfile(h.Dispenser)
	return &rh, err
}

// UnmarshalCaddyfile sets up the reply from Caddyfile tokens. Syntax:
//
//	dingtalk_reply [<matcher>] text <content>
//	dingtalk_reply [<matcher>] markdown <title> <text>
//	dingtalk_reply [<matcher>] empty
//	dingtalk_reply [<matcher>] [<type> [<args>...]] {
//	    type text|markdown|link|action_card|feed_card|empty
//	    title <title>
//	    text <content>
//	    url <messageUrl or singleURL>
//	    pic <picUrl>
//	    button <title> <url>
//	    link <title> <messageUrl> <picUrl>
//	    at_sender
//	    at_all
//	}
//
// The arguments and the block combine: `dingtalk_reply text "hi" { at_sender }`.
// A field given both ways, an unknown or repeated subdirective (button and
// link may repeat) and a reply its type cannot send are errors.
func (rh *Reply) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	seen := map[string]bool{}
	if args := d.RemainingArgs(); len(args) > 0 {
		rh.Type, seen["type"] = args[0], true
		if _, known := replyTypes[rh.Type]; !known {
			return d.Errf("unknown type %q (want %s)", rh.Type, replyTypeNames)
		}
		switch rest := args[1:]; {
		case len(rest) == 0:
		case rh.Type == "text" && len(rest) == 1:
			rh.Text, seen["text"] = rest[0], true
		case rh.Type == "markdown" && len(rest) == 2:
			rh.Title, rh.Text = rest[0], rest[1]
			seen["title"], seen["text"] = true, true
		default:
			return d.Errf("dingtalk_reply %s: wrong argument count; the shorthands are `text <content>` "+
				"and `markdown <title> <text>`, other fields go in a block", rh.Type)
		}
	}
	err := eachSubdirectiveOnce(d, seen, func(sub string) (err error) {
		switch sub {
		case "type":
			rh.Type, err = singleArg(d)
		case "title":
			rh.Title, err = singleArg(d)
		case "text":
			rh.Text, err = singleArg(d)
		case "url":
			rh.URL, err = singleArg(d)
		case "pic":
			rh.Pic, err = singleArg(d)
		case "button":
			var title, url string
			if !d.Args(&title, &url) || d.NextArg() {
				return d.Err("button needs a title and a url: button <title> <url>")
			}
			rh.Buttons = append(rh.Buttons, ReplyButton{Title: title, URL: url})
		case "link":
			var title, url, pic string
			if !d.Args(&title, &url, &pic) || d.NextArg() {
				return d.Err("link needs a title, a url and a picture: link <title> <messageUrl> <picUrl>")
			}
			rh.Links = append(rh.Links, ReplyLink{Title: title, URL: url, Pic: pic})
		case "at_sender":
			rh.AtSender, err = true, noArgs(d)
		case "at_all":
			rh.AtAll, err = true, noArgs(d)
		default:
			err = d.Errf("unrecognized subdirective %q", sub)
		}
		return err
	}, "button", "link")
	if err != nil {
		return err
	}
	if rh.Type == "" {
		return d.Err("dingtalk_reply needs a type: dingtalk_reply text <content>, or `type` in its block")
	}
	// The checks a JSON config gets at load time, here at adapt time.
	if err := rh.check(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// noArgs fails when the current subdirective has arguments.
func noArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Reply)(nil)
