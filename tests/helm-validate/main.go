// SPDX-License-Identifier: Apache-2.0
// helm-validate: strict offline validation of rendered Kubernetes manifests.
//
//	helm template ... | helm-validate [-]      or      helm-validate FILE...
//
// Every YAML document is decoded with client-go's strict universal
// deserializer, the same Go types the API server uses: an unknown field, a
// wrong type, a duplicate key or an unknown kind is an error. Documents of
// the Prometheus Operator's ServiceMonitor CRD, which client-go does not
// know, are decoded strictly into a copy of the CRD's Go type subset the
// chart uses and checked against the CRD's own patterns. On top of the
// structure, the checks the API server would refuse a manifest for and that
// need no cluster: resource names, label keys and values, port names, and a
// workload's selector matching its pod template.
//
// Output: one line per document, "ok KIND NAME" or "error KIND NAME: ...";
// exit status 1 when any document failed, 2 on unreadable input.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"-"}
	}
	failed := false
	for _, a := range args {
		var r io.Reader
		if a == "-" {
			r = os.Stdin
		} else {
			f, err := os.Open(a)
			if err != nil {
				fmt.Fprintf(os.Stderr, "helm-validate: %v\n", err)
				os.Exit(2)
			}
			defer f.Close()
			r = f
		}
		ok, err := validateStream(r, os.Stdout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "helm-validate: %s: %v\n", a, err)
			os.Exit(2)
		}
		failed = failed || !ok
	}
	if failed {
		os.Exit(1)
	}
}

var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// validateStream checks every document of a multi-document YAML stream.
func validateStream(r io.Reader, out io.Writer) (bool, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	allOK := true
	n := 0
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		n++
		kind, name, errs := validateDoc(doc)
		if len(errs) == 0 {
			fmt.Fprintf(out, "ok %s %s\n", kind, name)
			continue
		}
		allOK = false
		for _, e := range errs {
			fmt.Fprintf(out, "error %s %s: %s\n", kind, name, e)
		}
	}
	if n == 0 {
		return false, errors.New("no documents")
	}
	return allOK, nil
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") || t == "---" {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func validateDoc(doc []byte) (string, string, []string) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
		return "?", "?", []string{"not YAML: " + err.Error()}
	}
	kind, name := tm.Kind, tm.Metadata.Name
	if tm.APIVersion == "monitoring.coreos.com/v1" && tm.Kind == "ServiceMonitor" {
		return kind, name, validateServiceMonitor(doc)
	}
	obj, gvk, err := strict.Decode(doc, nil, nil)
	if err != nil {
		return kind, name, []string{err.Error()}
	}
	return gvk.Kind, name, semantic(obj)
}

// semantic: what the API server's validation would refuse and a
// structural decode lets through.
func semantic(obj runtime.Object) []string {
	var errs []string
	add := func(field string, msgs []string) {
		for _, m := range msgs {
			errs = append(errs, field+": "+m)
		}
	}
	if m, ok := obj.(metav1.Object); ok {
		add("metadata.name", validation.IsDNS1123Subdomain(m.GetName()))
		add("metadata.labels", checkLabels(m.GetLabels()))
		if ns := m.GetNamespace(); ns != "" {
			add("metadata.namespace", validation.IsDNS1123Label(ns))
		}
	}
	switch o := obj.(type) {
	case *corev1.Service:
		add("metadata.name", validation.IsDNS1035Label(o.Name))
		for i, p := range o.Spec.Ports {
			if p.Name != "" {
				add(fmt.Sprintf("spec.ports[%d].name", i), validation.IsValidPortName(p.Name))
			}
			if p.TargetPort.Type == intstr.String {
				add(fmt.Sprintf("spec.ports[%d].targetPort", i), validation.IsValidPortName(p.TargetPort.StrVal))
			}
		}
		add("spec.selector", checkLabels(o.Spec.Selector))
	case *appsv1.Deployment:
		errs = append(errs, checkSelector(o.Spec.Selector, o.Spec.Template.Labels)...)
		errs = append(errs, checkPod(&o.Spec.Template.Spec)...)
	case *appsv1.StatefulSet:
		errs = append(errs, checkSelector(o.Spec.Selector, o.Spec.Template.Labels)...)
		errs = append(errs, checkPod(&o.Spec.Template.Spec)...)
	case *corev1.ConfigMap:
		for k := range o.Data {
			add("data key "+k, validation.IsConfigMapKey(k))
		}
	case *corev1.Secret:
		for k := range o.Data {
			add("data key "+k, validation.IsConfigMapKey(k))
		}
		for k := range o.StringData {
			add("stringData key "+k, validation.IsConfigMapKey(k))
		}
	}
	return errs
}

func checkLabels(l map[string]string) []string {
	var errs []string
	for k, v := range l {
		for _, m := range validation.IsQualifiedName(k) {
			errs = append(errs, fmt.Sprintf("label key %q: %s", k, m))
		}
		for _, m := range validation.IsValidLabelValue(v) {
			errs = append(errs, fmt.Sprintf("label %q value %q: %s", k, v, m))
		}
	}
	return errs
}

func checkSelector(sel *metav1.LabelSelector, podLabels map[string]string) []string {
	if sel == nil {
		return []string{"spec.selector: required"}
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return []string{"spec.selector: " + err.Error()}
	}
	if s.Empty() || !s.Matches(labels.Set(podLabels)) {
		return []string{"spec.selector: does not match the pod template's labels"}
	}
	return nil
}

func checkPod(p *corev1.PodSpec) []string {
	var errs []string
	volumes := map[string]bool{}
	for _, v := range p.Volumes {
		if volumes[v.Name] {
			errs = append(errs, "volume "+v.Name+": duplicate")
		}
		volumes[v.Name] = true
		for _, m := range validation.IsDNS1123Label(v.Name) {
			errs = append(errs, "volume "+v.Name+": "+m)
		}
	}
	all := append(append([]corev1.Container{}, p.InitContainers...), p.Containers...)
	if len(p.Containers) == 0 {
		errs = append(errs, "spec.containers: required")
	}
	for _, c := range all {
		for _, m := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, "container "+c.Name+": "+m)
		}
		if c.Image == "" {
			errs = append(errs, "container "+c.Name+": image required")
		}
		ports := map[string]bool{}
		for _, port := range c.Ports {
			if port.Name != "" {
				for _, m := range validation.IsValidPortName(port.Name) {
					errs = append(errs, "container "+c.Name+" port "+port.Name+": "+m)
				}
				if ports[port.Name] {
					errs = append(errs, "container "+c.Name+" port "+port.Name+": duplicate name")
				}
				ports[port.Name] = true
			}
			if port.ContainerPort < 1 || port.ContainerPort > 65535 {
				errs = append(errs, fmt.Sprintf("container %s port %d: out of range", c.Name, port.ContainerPort))
			}
		}
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				errs = append(errs, "container "+c.Name+" mounts volume "+vm.Name+", which the pod does not have")
			}
		}
		for _, e := range c.Env {
			for _, m := range validation.IsEnvVarName(e.Name) {
				errs = append(errs, "container "+c.Name+" env "+e.Name+": "+m)
			}
		}
	}
	return errs
}

// --- ServiceMonitor (monitoring.coreos.com/v1) -----------------------------

// The fields of prometheus-operator's ServiceMonitor this chart may render,
// spelt as in its CRD; anything else is an unknown field here.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		TargetLabels      []string             `json:"targetLabels,omitempty"`
		PodTargetLabels   []string             `json:"podTargetLabels,omitempty"`
		Endpoints         []smEndpoint         `json:"endpoints"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		SampleLimit *uint64 `json:"sampleLimit,omitempty"`
	} `json:"spec"`
}

type smEndpoint struct {
	Port            string              `json:"port,omitempty"`
	TargetPort      *json.RawMessage    `json:"targetPort,omitempty"`
	Path            string              `json:"path,omitempty"`
	Scheme          string              `json:"scheme,omitempty"`
	Params          map[string][]string `json:"params,omitempty"`
	Interval        string              `json:"interval,omitempty"`
	ScrapeTimeout   string              `json:"scrapeTimeout,omitempty"`
	HonorLabels     bool                `json:"honorLabels,omitempty"`
	HonorTimestamps *bool               `json:"honorTimestamps,omitempty"`
	Authorization   *struct {
		Type        string                    `json:"type,omitempty"`
		Credentials *corev1.SecretKeySelector `json:"credentials,omitempty"`
	} `json:"authorization,omitempty"`
	RelabelConfigs       []relabel `json:"relabelings,omitempty"`
	MetricRelabelConfigs []relabel `json:"metricRelabelings,omitempty"`
}

type relabel struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    *string  `json:"separator,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Modulus      uint64   `json:"modulus,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// The CRD's pattern for monitoringv1.Duration.
var durationRe = regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)

func validateServiceMonitor(doc []byte) []string {
	j, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return []string{err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var sm serviceMonitor
	if err := dec.Decode(&sm); err != nil {
		return []string{"ServiceMonitor: " + err.Error()}
	}
	var errs []string
	errs = append(errs, prefixed("metadata.name", validation.IsDNS1123Subdomain(sm.Metadata.Name))...)
	errs = append(errs, prefixed("metadata.labels", checkLabels(sm.Metadata.Labels))...)
	if len(sm.Spec.Endpoints) == 0 {
		errs = append(errs, "spec.endpoints: required")
	}
	if len(sm.Spec.Selector.MatchLabels) == 0 && len(sm.Spec.Selector.MatchExpressions) == 0 {
		errs = append(errs, "spec.selector: selects every Service in the namespace")
	}
	if _, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector); err != nil {
		errs = append(errs, "spec.selector: "+err.Error())
	}
	for i, e := range sm.Spec.Endpoints {
		f := fmt.Sprintf("spec.endpoints[%d]", i)
		if e.Port == "" && e.TargetPort == nil {
			errs = append(errs, f+": port or targetPort required")
		}
		for _, d := range []string{e.Interval, e.ScrapeTimeout} {
			if d != "" && !durationRe.MatchString(d) {
				errs = append(errs, fmt.Sprintf("%s: %q is not a Prometheus duration", f, d))
			}
		}
		if e.Scheme != "" && e.Scheme != "http" && e.Scheme != "https" {
			errs = append(errs, fmt.Sprintf("%s.scheme: %q is not http or https", f, e.Scheme))
		}
		if e.Authorization != nil && e.Authorization.Credentials != nil && e.Authorization.Credentials.Name == "" {
			errs = append(errs, f+".authorization.credentials.name: required")
		}
	}
	return errs
}

func prefixed(field string, msgs []string) []string {
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, field+": "+m)
	}
	return out
}
