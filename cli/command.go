// Package cli is the `caddy dingtalk` command: tools that sign and send DingTalk
// robot callbacks to try a caddy-dingtalk gateway. It is a client of the
// gateway, registered with Caddy's command line, and never runs inside it.
package cli

import (
	"os"
	"os/signal"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The `caddy dingtalk` command: flag wiring only; the work is done by
// runSign and runSend.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "dingtalk",
		Usage: "sign|send|stream|event [flags]",
		Short: "Signs and sends DingTalk robot callbacks and event pushes, plays Stream mode, to try a gateway",
		Long: `
Tools to try a caddy-dingtalk gateway without DingTalk.

'sign' prints the timestamp and sign headers DingTalk would send for a
secret (and, with --url, a curl command that posts with them).

'send' builds a realistic callback, signs it, posts it to the gateway and
prints the status and the reply. With --webhook-listen it also plays
DingTalk's sessionWebhook and prints what the gateway posts there. It exits
non-zero unless the gateway answered 2xx with JSON (and, with
--webhook-listen, the awaited posts arrived). With --openapi-listen it
plays DingTalk's OpenAPI and prints the AI card updates as they arrive.

'stream' plays DingTalk for a gateway in Stream mode: a fake Stream server
(its api_base) and a fake sessionWebhook. Once the gateway connects, it
pushes one robot message and prints the gateway's ack and what the gateway
posts to the sessionWebhook. It exits non-zero unless the ack was 200 and
the awaited posts arrived.

'event' encrypts and signs an event subscription push (check_url or any
EventType) as DingTalk does, posts it to a dingtalk_event gateway and prints
the decrypted answer. It exits non-zero unless that is "success".

Give the robot's AppSecret with --secret-env NAME to keep it out of shell
history; the commands never print it.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(signCommand(), sendCommand(), streamCommand(), eventCommand())
			// Runnable, so that a mistyped subcommand fails instead of
			// printing the help with exit status 0.
			cmd.Args = cobra.NoArgs
			cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		},
	})
}

func signCommand() *cobra.Command {
	var opts signOptions
	cmd := &cobra.Command{
		Use:   "sign --secret-env NAME|--secret S [--timestamp MS] [--url URL]",
		Short: "Prints the timestamp and sign headers of a callback",
		Example: `  $ caddy dingtalk sign --secret 'this is a secret' --timestamp 1577262236757
  $ caddy dingtalk sign --secret-env DINGTALK_APP_SECRET --url http://localhost:8080/robot`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSign(opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	secretFlags(f, &opts.Secret)
	f.StringVar(&opts.Timestamp, "timestamp", "", "the timestamp header, milliseconds since the epoch (default now)")
	f.StringVar(&opts.URL, "url", "", "also print a curl command posting body.json to this URL")
	return cmd
}

func sendCommand() *cobra.Command {
	var opts sendOptions
	cmd := &cobra.Command{
		Use:   "send --url URL --secret-env NAME|--secret S [--text T] [flags]",
		Short: "Posts a signed callback to a gateway and prints the reply",
		Example: `  $ caddy dingtalk send --url http://localhost:8080/robot --secret-env DINGTALK_APP_SECRET --text hello
  $ caddy dingtalk send --url http://localhost:8080/robot --secret-env DINGTALK_APP_SECRET --group --webhook-listen 127.0.0.1:9999
  $ caddy dingtalk send --url http://localhost:8080/robot --secret-env DINGTALK_APP_SECRET --msgtype picture --sender-staff-id ''
  $ caddy dingtalk send --url http://localhost:8080/robot --secret-env DINGTALK_APP_SECRET --dry-run`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for flag := range fieldFlags {
				if f := cmd.Flags().Lookup(flag); f.Changed && f.Value.String() == "" {
					opts.Cleared = append(opts.Cleared, flag)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return runSend(ctx, opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.URL, "url", "", "the gateway's callback URL, like http://localhost:8080/robot (required)")
	secretFlags(f, &opts.Secret)
	f.StringVar(&opts.Callback.MsgType, "msgtype", "", "the message type: "+strings.Join(sendMsgTypes, ", ")+`, each with a content as DingTalk sends it (default "text")`)
	f.StringVar(&opts.Callback.Text, "text", "", `the text of a text message, a richText's text part, an audio's recognition (default "`+defaultSendText+`")`)
	f.StringVar(&opts.Callback.DownloadCode, "download-code", "", "the media's downloadCode, for picture, richText, file, audio and video (default a fresh one)")
	f.BoolVar(&opts.Callback.Group, "group", false, "send a group message (@mention stripped, as DingTalk does) instead of a one-to-one one")
	f.StringVar(&opts.Callback.SenderNick, "sender-nick", "", `the sender's display name (default "Zhang San"; '' sends it empty)`)
	f.StringVar(&opts.Callback.SenderStaffID, "sender-staff-id", "", `the sender's staff id (default "user123"; '' leaves it out, as for a user outside the organisation)`)
	f.StringVar(&opts.Callback.RobotCode, "robot-code", "", `the robot's code (default "dingrobot1"; '' leaves it out)`)
	f.StringVar(&opts.Callback.MsgID, "msg-id", "", "the msgId, to try de-duplication (default a fresh one)")
	f.BoolVar(&opts.Admin, "admin", false, "the sender is an administrator of the organisation (isAdmin); most senders are not")
	f.StringVar(&opts.Timestamp, "timestamp", "", "sign this timestamp, milliseconds since the epoch, instead of the time of sending")
	f.StringVar(&opts.BodyFile, "body", "", "send this file instead of a built callback (still signed)")
	f.BoolVar(&opts.PrintRequest, "print-body", false, "print the signed request (request line, headers, body) before sending it")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print the signed request and send nothing")
	f.StringVar(&opts.WebhookListen, "webhook-listen", "", "run a fake sessionWebhook on this address, like 127.0.0.1:9999, and print what the gateway posts there")
	f.DurationVar(&opts.Wait, "wait", 0, "with --webhook-listen: how long to wait for posts (default 30s)")
	f.IntVar(&opts.Count, "count", 0, "with --webhook-listen: how many posts to wait for; with --openapi-listen: how many AI cards (default 1)")
	f.StringVar(&opts.OpenAPIListen, "openapi-listen", "", "run a fake DingTalk OpenAPI on this address, like 127.0.0.1:9998, and print the AI card updates the gateway sends there")
	f.StringVar(&opts.AppKey, "app-key", "", `with --openapi-listen: the robot's AppKey (default "dingtrialappkey")`)
	f.DurationVar(&opts.Timeout, "timeout", 0, "how long to wait for the gateway's answer (default 30s)")
	return cmd
}

func streamCommand() *cobra.Command {
	var opts streamOptions
	cmd := &cobra.Command{
		Use:   "stream --secret-env NAME|--secret S [--listen ADDR] [--webhook-listen ADDR] [--text T] [flags]",
		Short: "Runs a fake Stream server, pushes a message to the gateway that connects, prints its answer",
		Example: `  $ caddy dingtalk stream --secret 'this is a secret' --text hello
  $ caddy dingtalk stream --secret-env DINGTALK_APP_SECRET --client-id dingxxxx --listen 127.0.0.1:9100 --webhook-listen 127.0.0.1:9999`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return runStream(ctx, opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Listen, "listen", "", "the fake Stream server's address; the gateway's api_base is http://<it> (default "+defaultStreamListen+")")
	f.StringVar(&opts.ClientID, "client-id", "", "the AppKey the fake accepts (default "+defaultStreamClientID+")")
	secretFlags(f, &opts.Secret)
	f.StringVar(&opts.WebhookListen, "webhook-listen", "", "the fake sessionWebhook's address, which the gateway's webhook_hosts must list (default "+defaultStreamWebhook+")")
	f.StringVar(&opts.Callback.Text, "text", "", `the message text (default "`+defaultSendText+`")`)
	f.BoolVar(&opts.Callback.Group, "group", false, "push a group message instead of a one-to-one one")
	f.StringVar(&opts.Callback.SenderNick, "sender-nick", "", `the sender's display name (default "Zhang San")`)
	f.StringVar(&opts.Callback.SenderStaffID, "sender-staff-id", "", `the sender's staff id (default "user123")`)
	f.StringVar(&opts.Callback.RobotCode, "robot-code", "", `the robot's code (default "dingrobot1")`)
	f.StringVar(&opts.Callback.MsgID, "msg-id", "", "the msgId (default a fresh one)")
	f.DurationVar(&opts.Wait, "wait", 0, "how long to wait for the gateway to connect, and then for the posts (default 30s)")
	f.IntVar(&opts.Count, "count", 0, "how many sessionWebhook posts to wait for (default 1)")
	return cmd
}

func eventCommand() *cobra.Command {
	var opts eventOptions
	cmd := &cobra.Command{
		Use:   "event --url URL --token-env NAME --aes-key-env NAME --owner-key KEY --type EventType [--json FILE] [flags]",
		Short: "Pushes an encrypted event to a dingtalk_event gateway and prints the decrypted answer",
		Example: `  $ caddy dingtalk event --url http://localhost:8080/events --token-env DINGTALK_EVENT_TOKEN --aes-key-env DINGTALK_EVENT_AES_KEY --owner-key dingappkey --type check_url
  $ caddy dingtalk event --url http://localhost:8080/events --token-env DINGTALK_EVENT_TOKEN --aes-key-env DINGTALK_EVENT_AES_KEY --owner-key dingappkey --type user_add_org --json user.json`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return runEvent(ctx, opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.URL, "url", "", "the gateway's event URL, like http://localhost:8080/events (required)")
	f.StringVar(&opts.TokenEnv, "token-env", "", "the environment variable holding the subscription's token (required)")
	f.StringVar(&opts.AESKeyEnv, "aes-key-env", "", "the environment variable holding the subscription's aes_key (required)")
	f.StringVar(&opts.OwnerKey, "owner-key", "", "the AppKey, suite key or corp id the gateway's owner_key is (required)")
	f.StringVar(&opts.Type, "type", "", "the EventType, such as check_url or user_add_org (required)")
	f.StringVar(&opts.JSONFile, "json", "", "a JSON object with the event's other fields")
	f.StringVar(&opts.EventID, "event-id", "", "the eventId, to try de-duplication (default a fresh one; none for URL checks)")
	f.DurationVar(&opts.Timeout, "timeout", 0, "how long to wait for the gateway's answer (default 30s)")
	return cmd
}

// secretFlags adds --secret and --secret-env.
func secretFlags(f *pflag.FlagSet, s *secretSource) {
	f.StringVar(&s.Env, "secret-env", "", "read the robot's AppSecret from this environment variable")
	f.StringVar(&s.Value, "secret", "", "the robot's AppSecret (prefer --secret-env: this one lands in shell history)")
}
