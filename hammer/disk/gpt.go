package disk

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"unicode/utf16"
)

// GPT constants for 128 entries of 128 bytes.
const (
	gptEntries   = 128
	gptEntrySize = 128
	mib          = 1 << 20
)

// GUID is a GPT GUID in its on-disk byte order (the first three fields little-endian).
type GUID [16]byte

// ParseGUID reads the textual form "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".
func ParseGUID(s string) (GUID, error) {
	var g GUID
	h := strings.ReplaceAll(s, "-", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 16 || len(s) != 36 {
		return g, fmt.Errorf("invalid guid %q", s)
	}
	binary.LittleEndian.PutUint32(g[0:], binary.BigEndian.Uint32(b[0:]))
	binary.LittleEndian.PutUint16(g[4:], binary.BigEndian.Uint16(b[4:]))
	binary.LittleEndian.PutUint16(g[6:], binary.BigEndian.Uint16(b[6:]))
	copy(g[8:], b[8:])
	return g, nil
}

// String is the textual form in upper case.
func (g GUID) String() string {
	return strings.ToUpper(fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(g[0:]),
		binary.LittleEndian.Uint16(g[4:]), binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:16]))
}

// newGUID returns a random (version 4) GUID.
func newGUID() GUID {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	g, _ := ParseGUID(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
	return g
}

// partitionTypes maps sgdisk type codes and names to GPT type GUIDs.
func partitionTypes() map[string]string {
	return map[string]string{
		"ef00": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "efi": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
		"ef02": "21686148-6449-6E6F-744E-656564454649", "bios": "21686148-6449-6E6F-744E-656564454649",
		"8300": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
		"8304": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "root": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
		"8200": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
		"fd00": "A19D880F-05FC-4D3B-A006-743F0F84911E", "raid": "A19D880F-05FC-4D3B-A006-743F0F84911E",
		"8e00": "E6D6D379-F507-44C2-A23C-238F2A3DF928", "lvm": "E6D6D379-F507-44C2-A23C-238F2A3DF928",
	}
}

// PartitionType resolves a layout's gptType: a code ("ef00"), a name ("efi") or a GUID; "" is
// a Linux filesystem.
func PartitionType(s string) (GUID, error) {
	if s == "" {
		s = "8300"
	}
	if g, ok := partitionTypes()[strings.ToLower(s)]; ok {
		s = g
	}
	return ParseGUID(s)
}

// Partition is one entry to write; sizes and offsets are in sectors.
type Partition struct {
	Number     int
	Type       GUID
	GUID       GUID
	Name       string
	First, End uint64 // End is inclusive
}

// Table is a GPT for a device of Sectors sectors of SectorSize bytes.
type Table struct {
	SectorSize uint64
	Sectors    uint64
	DiskGUID   GUID
	Partitions []Partition
}

// entrySectors is the size of the partition entry array in sectors.
func (t Table) entrySectors() uint64 {
	return (gptEntries*gptEntrySize + t.SectorSize - 1) / t.SectorSize
}

// FirstUsable and LastUsable bound the space partitions may use.
func (t Table) FirstUsable() uint64 { return 2 + t.entrySectors() }

// LastUsable is the last sector before the backup entries.
func (t Table) LastUsable() uint64 { return t.Sectors - 2 - t.entrySectors() }

// Plan lays partitions out 1 MiB-aligned in the order given; a size of 0 MiB takes the rest and
// is only allowed last.
func Plan(sectorSize, sectors uint64, parts []PlanPartition) (Table, error) {
	t := Table{SectorSize: sectorSize, Sectors: sectors, DiskGUID: newGUID()}
	if sectorSize < 512 || sectors < 2*t.FirstUsable()+mib/sectorSize {
		return t, fmt.Errorf("device of %d sectors of %d bytes is too small for a gpt", sectors, sectorSize)
	}
	align := mib / sectorSize
	next := (t.FirstUsable() + align - 1) / align * align
	seen := map[int]bool{}
	for i, p := range parts {
		if p.Number < 1 || p.Number > gptEntries || seen[p.Number] {
			return t, fmt.Errorf("partition number %d is not unique in 1..%d", p.Number, gptEntries)
		}
		seen[p.Number] = true
		typ, err := PartitionType(p.Type)
		if err != nil {
			return t, fmt.Errorf("partition %d: %w", p.Number, err)
		}
		if len(utf16.Encode([]rune(p.Name))) > 36 {
			return t, fmt.Errorf("partition %d: label %q is longer than 36 characters", p.Number, p.Name)
		}
		end := t.LastUsable()
		if p.SizeMiB == 0 {
			if i != len(parts)-1 {
				return t, fmt.Errorf("partition %d: size 0 (the rest of the disk) is only allowed last", p.Number)
			}
		} else {
			end = next + p.SizeMiB*align - 1
		}
		if end > t.LastUsable() || next > end {
			return t, fmt.Errorf("partition %d of %d MiB does not fit on the disk (%d MiB)", p.Number, p.SizeMiB, sectors*sectorSize/mib)
		}
		t.Partitions = append(t.Partitions, Partition{Number: p.Number, Type: typ, GUID: newGUID(), Name: p.Name, First: next, End: end})
		next = (end + 1 + align - 1) / align * align
	}
	return t, nil
}

// PlanPartition is a partition request for Plan.
type PlanPartition struct {
	Number  int
	SizeMiB uint64
	Type    string
	Name    string
}

// Encode returns the protective MBR with the primary header and entries (written at sector 0),
// and the backup entries with the backup header (written at sector LastUsable()+1).
func (t Table) Encode() (primary, backup []byte) {
	ss := t.SectorSize
	entries := make([]byte, t.entrySectors()*ss)
	for _, p := range t.Partitions {
		e := entries[(p.Number-1)*gptEntrySize:][:gptEntrySize]
		copy(e[0:], p.Type[:])
		copy(e[16:], p.GUID[:])
		binary.LittleEndian.PutUint64(e[32:], p.First)
		binary.LittleEndian.PutUint64(e[40:], p.End)
		for i, u := range utf16.Encode([]rune(p.Name)) {
			binary.LittleEndian.PutUint16(e[56+2*i:], u)
		}
	}
	entriesCRC := crc32.ChecksumIEEE(entries[:gptEntries*gptEntrySize])
	last := t.Sectors - 1
	header := func(current, other, entriesLBA uint64) []byte {
		h := make([]byte, ss)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], current)
		binary.LittleEndian.PutUint64(h[32:], other)
		binary.LittleEndian.PutUint64(h[40:], t.FirstUsable())
		binary.LittleEndian.PutUint64(h[48:], t.LastUsable())
		copy(h[56:], t.DiskGUID[:])
		binary.LittleEndian.PutUint64(h[72:], entriesLBA)
		binary.LittleEndian.PutUint32(h[80:], gptEntries)
		binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
		binary.LittleEndian.PutUint32(h[88:], entriesCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	mbr := make([]byte, ss)
	pe := mbr[446:]
	pe[1], pe[2], pe[3] = 0x00, 0x02, 0x00 // CHS of sector 1
	pe[4] = 0xee
	pe[5], pe[6], pe[7] = 0xff, 0xff, 0xff
	binary.LittleEndian.PutUint32(pe[8:], 1)
	binary.LittleEndian.PutUint32(pe[12:], uint32(min(last, 0xffffffff)))
	mbr[510], mbr[511] = 0x55, 0xaa

	primary = append(append(mbr, header(1, last, 2)...), entries...)
	backup = append(append([]byte{}, entries...), header(last, 1, t.LastUsable()+1)...)
	return primary, backup
}

// Write puts the table on f (a block device or image file) and syncs it.
func (t Table) Write(f *os.File) error {
	primary, backup := t.Encode()
	if _, err := f.WriteAt(primary, 0); err != nil {
		return fmt.Errorf("write primary gpt: %w", err)
	}
	if _, err := f.WriteAt(backup, int64((t.LastUsable()+1)*t.SectorSize)); err != nil {
		return fmt.Errorf("write backup gpt: %w", err)
	}
	return f.Sync()
}

// ReadTable parses the primary GPT of a device: enough to check what Write wrote.
func ReadTable(f *os.File, sectorSize uint64) (Table, error) {
	h := make([]byte, sectorSize)
	if _, err := f.ReadAt(h, int64(sectorSize)); err != nil {
		return Table{}, fmt.Errorf("read gpt header: %w", err)
	}
	if string(h[:8]) != "EFI PART" {
		return Table{}, errors.New("read gpt header: no gpt signature")
	}
	crc := binary.LittleEndian.Uint32(h[16:])
	binary.LittleEndian.PutUint32(h[16:], 0)
	if crc32.ChecksumIEEE(h[:92]) != crc {
		return Table{}, errors.New("read gpt header: bad header crc")
	}
	t := Table{SectorSize: sectorSize, Sectors: binary.LittleEndian.Uint64(h[32:]) + 1}
	copy(t.DiskGUID[:], h[56:72])
	n, size := binary.LittleEndian.Uint32(h[80:]), binary.LittleEndian.Uint32(h[84:])
	if size != gptEntrySize || n != gptEntries {
		return t, fmt.Errorf("read gpt: %d entries of %d bytes not supported", n, size)
	}
	entries := make([]byte, n*size)
	if _, err := f.ReadAt(entries, int64(binary.LittleEndian.Uint64(h[72:])*sectorSize)); err != nil {
		return t, fmt.Errorf("read gpt entries: %w", err)
	}
	if crc32.ChecksumIEEE(entries) != binary.LittleEndian.Uint32(h[88:]) {
		return t, errors.New("read gpt entries: bad crc")
	}
	for i := range int(n) {
		e := entries[i*gptEntrySize:][:gptEntrySize]
		var p Partition
		copy(p.Type[:], e[0:16])
		if p.Type == (GUID{}) {
			continue
		}
		copy(p.GUID[:], e[16:32])
		p.Number, p.First, p.End = i+1, binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:])
		var name []uint16
		for j := 56; j < gptEntrySize; j += 2 {
			if u := binary.LittleEndian.Uint16(e[j:]); u != 0 {
				name = append(name, u)
			} else {
				break
			}
		}
		p.Name = string(utf16.Decode(name))
		t.Partitions = append(t.Partitions, p)
	}
	return t, nil
}
