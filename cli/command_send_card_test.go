package cli

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/aicard"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

// freeAddr is a free loopback address.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestSendPrintsTheCardsUpdates(t *testing.T) {
	apiAddr := freeAddr(t)
	// A gateway that answers empty and streams three words into a card
	// through the OpenAPI that send plays.
	gw := newGateway(t, testSecret, func(w http.ResponseWriter, r *http.Request) {
		go func() {
			client, err := openapi.New(openapi.Config{AppKey: defaultTrialAppKey, AppSecret: testSecret, BaseURL: "http://" + apiAddr})
			if err != nil {
				panic(err)
			}
			s := aicard.Start(context.Background(), aicard.Config{Client: client, Interval: time.Millisecond}, aicard.Target{ConversationID: "cidGroup123=="})
			for _, word := range []string{"one ", "two ", "three"} {
				_ = s.Write(context.Background(), word)
			}
			s.Close()
		}()
		reply(http.StatusOK, jsonType, `{"msgtype":"empty"}`)(w, r)
	})
	stdout, stderr, err := send(t, sendOptions{URL: gw.URL + "/robot", Secret: secretSource{Value: testSecret}, OpenAPIListen: apiAddr, Wait: 10 * time.Second})
	if err != nil {
		t.Fatalf("err %v\n%s\n%s", err, stdout, stderr)
	}
	for _, want := range []string{"card 1 created (dtv1.card//IM_GROUP.cidGroup123==)\n", "card 1 state processing\n", " final: one two three\n", "card 1 state finished\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout has no %q:\n%s", want, stdout)
		}
	}
}
