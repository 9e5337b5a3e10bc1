package disko

// The typed model of disko.devices after default resolution. Field names
// follow disko's option names; every field holds its resolved value.

// Hooks are user shell snippets run around a node's create/mount/unmount.
type Hooks struct {
	PreCreate, PostCreate   string
	PreMount, PostMount     string
	PreUnmount, PostUnmount string
}

// Layout is a parsed, resolved and validated disko.devices value.
type Layout struct {
	Disks    []*Disk             // disk.*, name order
	MDArrays []*MDArray          // mdadm.*
	Zpools   []*Zpool            // zpool.*
	VGs      []*VG               // lvm_vg.*
	Nodevs   []*Nodev            // nodev.*
	Bcachefs []*BcachefsFS       // bcachefs_filesystems.*
	index    map[string]Device   // "disk.main" -> device
	order    []Device            // dependency order (disko's toposort)
	deps     map[string][]string // device key -> keys it depends on
}

// Device is a top-level device (disk, mdadm, zpool, lvm_vg, nodev,
// bcachefs_filesystem).
type Device interface {
	// Key is "<top-level attr>.<name>", e.g. "disk.main".
	Key() string
	JSONPath() string
}

// Content is what a device slot or partition slot holds.
type Content interface {
	// Kind is the disko type string ("gpt", "filesystem", ...).
	Kind() string
	// Dev is the block device the content lives on.
	Dev() string
	JSONPath() string
}

type node struct {
	Path  string // JSON path of the node
	Hooks Hooks
}

func (n *node) JSONPath() string { return n.Path }

// Disk is a physical block device.
type Disk struct {
	node
	Attr      string
	Name      string
	Device    string
	Destroy   bool
	ImageName string
	ImageSize string
	Content   Content
}

func (d *Disk) Key() string { return "disk." + d.Attr }

// GPT is a GUID partition table written with sgdisk.
type GPT struct {
	node
	Device               string
	EFIGptPartitionFirst bool
	Partitions           []*Partition // creation order (priority, then name)
	parentKind           string       // "disk", "mdadm", "luks"
	parentName           string
}

func (g *GPT) Kind() string { return "gpt" }
func (g *GPT) Dev() string  { return g.Device }

// Partition is one GPT partition.
type Partition struct {
	node
	Attr       string
	Name       string
	Type       string // sgdisk short code or GUID
	Size       string
	Start      string
	End        string
	Alignment  int
	Priority   int
	Label      string
	UUID       *string
	Attributes []int
	Device     string
	Hybrid     *Hybrid
	Index      int // 1-based partition number
	Content    Content
}

// Hybrid marks a partition for the hybrid MBR.
type Hybrid struct {
	MBRPartitionType *string
	MBRBootableFlag  bool
}

// Table is disko's legacy partition table type (parted).
type Table struct {
	node
	Device     string
	Format     string // gpt or msdos
	Partitions []*TablePartition
}

func (t *Table) Kind() string { return "table" }
func (t *Table) Dev() string  { return t.Device }

// TablePartition is one entry of a legacy table.
type TablePartition struct {
	node
	Name     *string
	PartType string
	FSType   *string
	Start    string
	End      string
	Flags    []string
	Bootable bool
	Index    int
	Device   string
	Content  Content
}

// Filesystem is a mkfs-formatted filesystem.
type Filesystem struct {
	node
	Device       string
	Format       string
	ExtraArgs    []string
	MountOptions []string
	Mountpoint   *string
}

func (f *Filesystem) Kind() string { return "filesystem" }
func (f *Filesystem) Dev() string  { return f.Device }

// LUKS is a dm-crypt LUKS container.
type LUKS struct {
	node
	Name               string
	Device             string
	PasswordFile       *string
	Settings           map[string]any
	KeyFile            *string
	AskPassword        bool
	AdditionalKeyFiles []string
	InitrdUnlock       bool
	ExtraFormatArgs    []string
	ExtraOpenArgs      []string
	Content            Content
}

func (l *LUKS) Kind() string { return "luks" }
func (l *LUKS) Dev() string  { return l.Device }

// MapperPath is the device of the opened container.
func (l *LUKS) MapperPath() string { return "/dev/mapper/" + l.Name }

// LVMPV is a physical volume member of a volume group.
type LVMPV struct {
	node
	VG     string
	Device string
}

func (p *LVMPV) Kind() string { return "lvm_pv" }
func (p *LVMPV) Dev() string  { return p.Device }

// VG is an LVM volume group.
type VG struct {
	node
	Attr string
	Name string
	LVs  []*LV // creation order (priority, then name)
}

func (v *VG) Key() string { return "lvm_vg." + v.Attr }

// LV is a logical volume.
type LV struct {
	node
	Attr      string
	Name      string
	Size      string
	LVMType   *string
	Pool      *string
	ExtraArgs []string
	Priority  int
	Content   Content
}

// MDArray is an mdadm RAID array.
type MDArray struct {
	node
	Attr      string
	Name      string
	Level     int
	Metadata  string
	ExtraArgs []string
	Content   Content
}

func (m *MDArray) Key() string { return "mdadm." + m.Attr }

// Path is the array device.
func (m *MDArray) DevPath() string { return "/dev/md/" + m.Name }

// MDRaid marks a member device of an mdadm array.
type MDRaid struct {
	node
	Name   string
	Device string
}

func (m *MDRaid) Kind() string { return "mdraid" }
func (m *MDRaid) Dev() string  { return m.Device }

// ZFSMember marks a member device of a zpool.
type ZFSMember struct {
	node
	Pool   string
	Device string
}

func (z *ZFSMember) Kind() string { return "zfs" }
func (z *ZFSMember) Dev() string  { return z.Device }

// Zpool is a ZFS pool.
type Zpool struct {
	node
	Attr          string
	Name          string
	Mode          string    // plain mode ("", mirror, raidz…); empty when Topology is set
	Topology      *Topology // nil for a plain mode
	Options       map[string]string
	RootFsOptions map[string]string
	Mountpoint    *string
	MountOptions  []string
	Datasets      []Dataset // attr order
}

func (z *Zpool) Key() string { return "zpool." + z.Attr }

// Topology is a zpool's explicit vdev layout.
type Topology struct {
	Vdev    []Vdev
	Spare   []string
	Log     []Vdev
	Dedup   []Vdev
	Special []Vdev
	Cache   []string
	// specialSingle records that special was given as one vdev, not a list.
	specialSingle bool
	specialNull   bool
}

// Vdev is one vdev of a topology.
type Vdev struct {
	Mode    string
	Members []string
}

// Dataset is a zfs_fs or zfs_volume.
type Dataset interface {
	DatasetName() string
	JSONPath() string
}

// ZFSFS is a ZFS filesystem dataset.
type ZFSFS struct {
	node
	Attr         string
	Name         string
	Options      map[string]string
	MountOptions []string
	Mountpoint   *string
}

func (d *ZFSFS) DatasetName() string { return d.Name }

// ZFSVolume is a ZFS volume (zvol).
type ZFSVolume struct {
	node
	Attr         string
	Name         string
	Size         *string
	Options      map[string]string
	ExtraArgs    []string
	MountOptions []string
	Content      Content
}

func (d *ZFSVolume) DatasetName() string { return d.Name }

// Btrfs is a btrfs filesystem with optional subvolumes and swap files.
type Btrfs struct {
	node
	Device       string
	ExtraArgs    []string
	MountOptions []string
	Mountpoint   *string
	Swap         []*SwapFile
	Subvolumes   []*Subvolume
}

func (b *Btrfs) Kind() string { return "btrfs" }
func (b *Btrfs) Dev() string  { return b.Device }

// Subvolume is a btrfs subvolume.
type Subvolume struct {
	node
	Attr         string
	Name         string
	ExtraArgs    []string
	MountOptions []string
	Mountpoint   *string
	Swap         []*SwapFile
}

// SwapFile is a btrfs swap file.
type SwapFile struct {
	node
	Attr     string
	Size     string
	Path     string
	Priority *int
	Options  []string
}

// Swap is a swap partition or volume.
type Swap struct {
	node
	Device           string
	ExtraArgs        []string
	MountOptions     []string
	Priority         *int
	DiscardPolicy    *string
	RandomEncryption bool
	ResumeDevice     bool
}

func (s *Swap) Kind() string { return "swap" }
func (s *Swap) Dev() string  { return s.Device }

// Nodev is a mount without a block device (tmpfs, bind, …).
type Nodev struct {
	node
	Attr         string
	FSType       string
	Device       string
	Mountpoint   string
	MountOptions []string
}

func (n *Nodev) Key() string { return "nodev." + n.Attr }

// BcachefsMember marks a member device of a bcachefs filesystem.
type BcachefsMember struct {
	node
	Filesystem      string
	Label           string
	ExtraFormatArgs []string
	Device          string
}

func (b *BcachefsMember) Kind() string { return "bcachefs" }
func (b *BcachefsMember) Dev() string  { return b.Device }

// BcachefsFS is a (multi-device) bcachefs filesystem.
type BcachefsFS struct {
	node
	Attr            string
	Name            string
	ExtraFormatArgs []string
	MountOptions    []string
	Mountpoint      *string
	PasswordFile    *string
	UUID            string
	Subvolumes      []*BcachefsSubvolume
}

func (b *BcachefsFS) Key() string { return "bcachefs_filesystems." + b.Attr }

// DevPath is the device used for mounting.
func (b *BcachefsFS) DevPath() string { return "/dev/disk/by-uuid/" + b.UUID }

// BcachefsSubvolume is a bcachefs subvolume.
type BcachefsSubvolume struct {
	node
	Attr         string
	Name         string
	Mountpoint   *string
	MountOptions []string
}
