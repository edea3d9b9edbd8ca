package caddymodule

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// exportedSeries returns the module's metric names, as Prometheus stores
// them (a histogram's _bucket, _sum and _count), with their labels.
func exportedSeries(t *testing.T) map[string][]string {
	t.Helper()
	descFields := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	series := map[string][]string{}
	for _, c := range moduleCollectors() {
		descs := make(chan *prometheus.Desc, 8)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			m := descFields.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read %s", d)
			}
			labels := strings.Split(m[2], ",")
			if _, isHistogram := c.(*prometheus.HistogramVec); isHistogram {
				series[m[1]+"_bucket"] = append(slices.Clone(labels), "le")
				series[m[1]+"_sum"], series[m[1]+"_count"] = labels, labels
				continue
			}
			series[m[1]] = labels
		}
	}
	return series
}

// queries returns every PromQL expression of a Grafana dashboard: the
// panels' targets and the variables' queries.
func queries(v any) []string {
	var found []string
	switch v := v.(type) {
	case map[string]any:
		for key, child := range v {
			if s, ok := child.(string); ok && (key == "expr" || key == "definition") {
				found = append(found, s)
			}
			found = append(found, queries(child)...)
		}
	case []any:
		for _, child := range v {
			found = append(found, queries(child)...)
		}
	}
	return found
}

var (
	metricName = regexp.MustCompile(`\bcaddy_dingtalk_[a-z_]+`)
	// Labels in by (...), without (...), label_values(metric, label) and
	// selectors {label="..."}.
	groupedLabels  = regexp.MustCompile(`\b(?:by|without) \(([^)]*)\)`)
	valuesLabel    = regexp.MustCompile(`label_values\([a-z_]+, *([a-z_]+)\)`)
	selectorLabels = regexp.MustCompile(`([a-z_]+) *(?:=~|!~|!=|=)`)
	selectors      = regexp.MustCompile(`\{([^}]*)\}`)
)

// Every query of the Grafana dashboard names metrics the module exports,
// and only labels those metrics have.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("../deploy/grafana/caddy-dingtalk.json")
	if err != nil {
		t.Fatal(err)
	}
	var dashboard any
	if err := json.Unmarshal(data, &dashboard); err != nil {
		t.Fatal(err)
	}
	series := exportedSeries(t)
	exprs := queries(dashboard)
	if len(exprs) < 10 {
		t.Fatalf("only %d queries found", len(exprs))
	}
	for _, expr := range exprs {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s names no caddy_dingtalk_ metric", expr)
		}
		var known []string // the labels of the query's metrics
		for _, name := range names {
			labels, ok := series[name]
			if !ok {
				t.Errorf("%s: the module exports no %s", expr, name)
			}
			known = append(known, labels...)
		}
		var used []string
		for _, m := range groupedLabels.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(m[1], ",") {
				used = append(used, strings.TrimSpace(l))
			}
		}
		for _, m := range valuesLabel.FindAllStringSubmatch(expr, -1) {
			used = append(used, m[1])
		}
		for _, sel := range selectors.FindAllStringSubmatch(expr, -1) {
			for _, m := range selectorLabels.FindAllStringSubmatch(sel[1], -1) {
				used = append(used, m[1])
			}
		}
		for _, label := range used {
			if label != "" && !slices.Contains(known, label) {
				t.Errorf("%s: label %q is not one of %v", expr, label, known)
			}
		}
	}
}
