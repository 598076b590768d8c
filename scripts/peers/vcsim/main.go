// A vSphere test peer for the esx plugin: govmomi's simulator (vcsim) on a
// run-time loopback port, with the inventory shaped by flags.
//
// On start it prints one JSON line on stdout: the SDK URL and the inventory the
// simulator holds (hosts and VMs with the values the plugin reports), read from
// the simulator's own object registry, so a test compares the plugin's records
// with the simulator's values and never with hard-coded ones. It serves until
// its stdin closes or it is killed.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"sort"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type host struct {
	Name         string `json:"name"`
	Vendor       string `json:"vendor"`
	Model        string `json:"model"`
	CpuModel     string `json:"cpu_model"`
	CpuCores     int16  `json:"cpu_cores"`
	CpuThreads   int16  `json:"cpu_threads"`
	CpuMhz       int32  `json:"cpu_mhz"`
	MemoryBytes  int64  `json:"memory_bytes"`
	BiosVersion  string `json:"bios_version"`
	ProductName  string `json:"product_name"`
	ProductVer   string `json:"product_version"`
	ProductBuild string `json:"product_build"`
}

type vm struct {
	Name       string `json:"name"`
	Host       string `json:"host"`
	PowerState string `json:"power_state"`
	Cpus       int32  `json:"cpus"`
	MemoryMB   int32  `json:"memory_mb"`
	GuestOS    string `json:"guest_os"`
	Uuid       string `json:"uuid"`
}

func main() {
	useTLS := flag.Bool("tls", true, "serve HTTPS with a self-signed certificate")
	hosts := flag.Int("hosts", 2, "standalone hosts")
	clusterHosts := flag.Int("cluster-hosts", 2, "hosts in the cluster")
	vms := flag.Int("vms", 2, "virtual machines per host or resource pool")
	user := flag.String("user", "jobstack", "the only user name accepted")
	password := flag.String("password", "s3cret", "the only password accepted")
	flag.Parse()

	model := simulator.VPX()
	model.Host = *hosts
	model.Cluster = 1
	model.ClusterHost = *clusterHosts
	model.Machine = *vms
	// No containers or real guests behind the VMs: a pure API peer.
	model.Autostart = false
	if err := model.Create(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create the simulator model:", err)
		os.Exit(1)
	}
	defer model.Remove()
	vary(model)

	if *useTLS {
		cert, err := selfSigned()
		if err != nil {
			fmt.Fprintln(os.Stderr, "cannot make a certificate:", err)
			os.Exit(1)
		}
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(*user, *password)}
	server := model.Service.NewServer()
	defer server.Close()

	sdk := *server.URL
	sdk.User = nil
	out, err := json.Marshal(map[string]interface{}{
		"url":   sdk.String(),
		"hosts": listHosts(),
		"vms":   listVMs(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot encode the inventory:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))

	// Serve until the test closes our stdin (or kills us).
	reader := bufio.NewReader(os.Stdin)
	for {
		if _, err := reader.ReadByte(); err != nil {
			return
		}
	}
}

// selfSigned makes a fresh self-signed certificate for 127.0.0.1, as a fresh
// ESX install has (the simulator's built-in one is a 1024-bit RSA key, which
// modern TLS stacks refuse outright).
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost.localdomain", Organization: []string{"VMware"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// vary gives the hosts and VMs distinct sizes (and the VMs distinct power
// states), so a plugin that mixes them up or reads the wrong property cannot
// pass by luck.
func vary(model *simulator.Model) {
	hosts := simulator.Map.All("HostSystem")
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Entity().Name < hosts[j].Entity().Name })
	for i, e := range hosts {
		h := e.(*simulator.HostSystem)
		h.Summary.Hardware.NumCpuCores = int16(2 * (i + 1))
		h.Summary.Hardware.NumCpuThreads = int16(4 * (i + 1))
		h.Summary.Hardware.MemorySize = int64(i+1) << 33
	}
	all := simulator.Map.All("VirtualMachine")
	sort.Slice(all, func(i, j int) bool { return all[i].Entity().Name < all[j].Entity().Name })
	for i, e := range all {
		v := e.(*simulator.VirtualMachine)
		v.Config.Hardware.NumCPU = int32(1 + i%4)
		v.Summary.Config.NumCpu = v.Config.Hardware.NumCPU
		v.Config.Hardware.MemoryMB = int32(256 * (i + 1))
		v.Summary.Config.MemorySizeMB = v.Config.Hardware.MemoryMB
		v.Runtime.PowerState = types.VirtualMachinePowerStatePoweredOn
		if i%3 == 2 {
			v.Runtime.PowerState = types.VirtualMachinePowerStatePoweredOff
		}
		v.Summary.Runtime.PowerState = v.Runtime.PowerState
	}
}

func listHosts() []host {
	var out []host
	for _, e := range simulator.Map.All("HostSystem") {
		h := e.(*simulator.HostSystem)
		hw := h.Summary.Hardware
		rec := host{
			Name:        h.Name,
			Vendor:      hw.Vendor,
			Model:       hw.Model,
			CpuModel:    hw.CpuModel,
			CpuCores:    hw.NumCpuCores,
			CpuThreads:  hw.NumCpuThreads,
			CpuMhz:      hw.CpuMhz,
			MemoryBytes: hw.MemorySize,
		}
		if h.Hardware != nil && h.Hardware.BiosInfo != nil {
			rec.BiosVersion = h.Hardware.BiosInfo.BiosVersion
		}
		p := h.Summary.Config.Product
		if p != nil {
			rec.ProductName = p.FullName
			rec.ProductVer = p.Version
			rec.ProductBuild = p.Build
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func listVMs() []vm {
	var out []vm
	for _, e := range simulator.Map.All("VirtualMachine") {
		v := e.(*simulator.VirtualMachine)
		hostName := ""
		if v.Runtime.Host != nil {
			if h, ok := simulator.Map.Get(*v.Runtime.Host).(*simulator.HostSystem); ok {
				hostName = h.Name
			}
		}
		out = append(out, vm{
			Name:       v.Name,
			Host:       hostName,
			PowerState: string(v.Runtime.PowerState),
			Cpus:       v.Config.Hardware.NumCPU,
			MemoryMB:   v.Config.Hardware.MemoryMB,
			GuestOS:    v.Config.GuestFullName,
			Uuid:       v.Config.Uuid,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
