package caddymodule

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/aicard"
)

// cardMetrics are the AI cards' collectors, registered with the module's
// (metrics.go). Labels are bot names and fixed words.
var cardMetrics = newCardCollectors()

type cardCollectors struct {
	created     *prometheus.CounterVec
	updates     *prometheus.CounterVec
	fallbacks   *prometheus.CounterVec
	firstUpdate *prometheus.HistogramVec
}

// Results of card updates, as counted.
const (
	cardUpdateSent    = "sent"    // DingTalk took the update
	cardUpdateSkipped = "skipped" // a piece of text folded into a later update by the interval
	cardUpdateSlowed  = "slowed"  // DingTalk answered its QPS limit: the updates slowed down
)

func newCardCollectors() *cardCollectors {
	const ns, sub = "caddy", "dingtalk"
	return &cardCollectors{
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "cards_created_total",
			Help: "AI cards created for streamed answers, by bot.",
		}, []string{"bot"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "card_updates_total",
			Help: "AI card updates by bot and result: sent; skipped, pieces of text the interval folded into a later update; slowed, refused by DingTalk's QPS limit.",
		}, []string{"bot", "result"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "card_fallbacks_total",
			Help: "Streamed answers posted as a message because their card could not be made, by bot.",
		}, []string{"bot"}),
		firstUpdate: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "card_first_update_seconds",
			Help:    "Time from the backend's first text to the card's first update, by bot.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5},
		}, []string{"bot"}),
	}
}

func (m *cardCollectors) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.created, m.updates, m.fallbacks, m.firstUpdate}
}

// hooks counts what one bot's card streams do.
func (m *cardCollectors) hooks(bot string) aicard.Hooks {
	return aicard.Hooks{
		Created: m.created.WithLabelValues(bot).Inc,
		Updated: func(skipped int) {
			m.updates.WithLabelValues(bot, cardUpdateSent).Inc()
			m.updates.WithLabelValues(bot, cardUpdateSkipped).Add(float64(skipped))
		},
		Slowed: m.updates.WithLabelValues(bot, cardUpdateSlowed).Inc,
		FirstUpdate: func(d time.Duration) {
			m.firstUpdate.WithLabelValues(bot).Observe(d.Seconds())
		},
	}
}

// fallback counts an answer whose card could not be made.
func (m *cardCollectors) fallback(bot string) {
	m.fallbacks.WithLabelValues(bot).Inc()
}
