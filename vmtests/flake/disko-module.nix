# A stand-in for disko's NixOS module, with builtins only (no nixpkgs here):
#
#   (import ./disko-module.nix) layout
#
# takes a layout as users write it (disko.devices as a plain attribute set)
# and returns what `config.disko.devices` is once disko's option types have
# filled it in, so that the test systems show nixos-via the real shape:
#
# - every user-facing option with the default disko computes for it
#   (partition labels, devices, priorities, sizes, mount options, ...);
# - on every node the internal options disko declares, with the same kinds
#   of values: `_create` (a string), `_mount`/`_unmount` (sets of strings),
#   `_config` (NixOS config pieces), `_meta` and `_pkgs` (a plain set, a
#   lambda or a functor, whichever disko's option type makes of them), the
#   six hooks (`preCreateHook` ... `postUnmountHook`, "" unless set);
# - `_parent` on every content node: its parent's module configuration, that
#   is the parent node plus `_module` (whose `args` hold `name`, `diskoLib`,
#   `extendModules`, ...; functions among them), so `_parent.content` leads
#   back to the node itself: a cycle, as in disko;
# - the top level: all six collections, present even when empty, and the
#   internal `_meta`, `_packages`, `_scripts`, `_create`, `_mount`,
#   `_unmount`, `_destroy`, `_legacyDestroy`, `_disko`, `_formatMount`,
#   `_destroyFormatMount` and `_config`; every zpool has the internal
#   `__root` dataset.
#
# As the module system removes it from every submodule's config, a node as
# reached from disko.devices has no `_module` attribute of its own; only
# `_parent` shows one. The attribute names of every node are fixed by its
# type and the user's names, so listing them (as DiskoPlain does before it
# drops the "_" ones) forces none of the internal values. The scripts here
# are short stand-ins, not disko's: nixos-via renders its own and never
# reads them.
layout:
let
  inherit (builtins)
    attrNames attrValues catAttrs concatLists concatStringsSep elem elemAt
    filter foldl' genList hasAttr hashString head isAttrs isList isString
    length listToAttrs mapAttrs match replaceStrings sort stringLength
    substring tail;

  rootMountPoint = "/mnt";

  # --- small helpers (nixpkgs' lib is not available) ---
  optionalAttrs = c: s: if c then s else { };
  optional = c: x: if c then [ x ] else [ ];
  optionalString = c: s: if c then s else "";
  hasPrefix = p: s: substring 0 (stringLength p) s == p;
  removePrefix = p: s: if hasPrefix p s then substring (stringLength p) (stringLength s) s else s;
  hasInfix = i: s: match ".*${i}.*" s != null; # only for "100%", no regex characters
  lastChar = s: substring (stringLength s - 1) 1 s;
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
  flatten = x: if isList x then concatLists (map flatten x) else [ x ];
  indexed = l: genList (i: { index = i + 1; value = elemAt l i; }) (length l);

  # A value as an option of type `functionTo` leaves it: callable, but an
  # attribute set with __functor; plain `default = x: ...` stays a lambda.
  functor = f: { __functor = _: f; __functionArgs = { }; };

  # Deep merge that joins lists, for the `_meta` device dependencies.
  deepMerge = a: b:
    a // mapAttrs
      (n: v:
        if !(hasAttr n a) then v
        else if isAttrs v && isAttrs a.${n} then deepMerge a.${n} v
        else if isList v && isList a.${n} then a.${n} ++ v
        else v)
      b;
  deepMergeAll = foldl' deepMerge { };

  # ASCII byte -> number, for the udev escape below.
  hexDigit = n: substring n 1 "0123456789ABCDEF";
  toHex = n: if n < 16 then hexDigit n else toHex (n / 16) + hexDigit (n - 16 * (n / 16));
  toHex2 = n: (if n < 16 then "0" else "") + toHex n;
  asciiCodes = listToAttrs (genList
    (i: { name = builtins.fromJSON "\"\\u00${toHex2 (i + 1)}\""; value = i + 1; })
    127);
  # udev keeps 0-9 A-Z a-z and # + , - . : = @ _ / in a symlink name and
  # writes every other byte as \xHH (hex without padding, upper case).
  udevKeeps = c: match "[0-9A-Za-z#+,.:=@_/-]" c != null;
  udevEscape = s: concatStringsSep "" (genList
    (i:
      let c = substring i 1 s; in
      if udevKeeps c then c
      else if hasAttr c asciiCodes then "\\x" + toHex asciiCodes.${c}
      else throw "disko.devices: cannot escape byte ${toString i} of the partition label \"${s}\"")
    (stringLength s));

  # GPT names hold 36 UTF-16 characters: longer labels become the first 36
  # hex digits of their sha256.
  gptLabel = l: if stringLength l > 36 then substring 0 36 (hashString "sha256" l) else l;

  # The partition device path disko derives for partition N of a block
  # device in the legacy table type.
  numbered = dev: n:
    let i = toString n; in
    if match "/dev/([vs]|(xv)d).+" dev != null then dev + i
    else if match "/dev/(disk|zvol)/.+" dev != null then "${dev}-part${i}"
    else if match "/dev/((nvme|mmcblk).+|md/.*[[:digit:]])" dev != null then "${dev}p${i}"
    else if match "/dev/md/.+" dev != null then dev + i
    else if match "/dev/mapper/.+" dev != null then dev + i
    else if match "/dev/loop[[:digit:]]+" dev != null then "${dev}p${i}"
    else throw "disko.devices: ${dev} is not a device path disko knows how to number";

  required = path: opt: throw "disko.devices${path}.${opt} is used but not defined";

  hookNames = [ "preCreateHook" "postCreateHook" "preMountHook" "postMountHook" "preUnmountHook" "postUnmountHook" ];
  hooks = listToAttrs (map (n: { name = n; value = ""; }) hookNames);

  # What a child sees as `_parent`: the parent's configuration inside the
  # module system, which still carries `_module`.
  withModule = node: args: node // {
    _module = {
      args = {
        inherit (args) name;
        inherit rootMountPoint;
        diskoLib = diskoLibStub;
        extendModules = { modules ? [ ], ... }: throw "disko-module.nix stand-in: extendModules is not implemented";
        moduleType = { _type = "option-type"; name = "submodule"; merge = loc: defs: throw "stand-in"; check = _: true; };
      } // optionalAttrs (args ? parent) { inherit (args) parent; }
      // optionalAttrs (args ? device) { inherit (args) device; };
      check = true;
      freeformType = null;
      specialArgs = { };
    };
  };
  diskoLibStub = {
    inherit deepMerge udevEscape gptLabel;
    deviceNumbering = numbered;
  };

  # Wraps a script fragment the way every disko node's scripts carry its
  # hooks around its own commands.
  script = kind: node: body: ''
    ( # ${node.type} ${toString (node.name or "")} ${toString (node.device or "")}
      ${node."pre${kind}Hook"}
      ${body}
      ${node."post${kind}Hook"}
    )
  '';
  mountScripts = kind: node: set: mapAttrs
    (n: v: if isString v then script kind node v else mapAttrs (_: s: script kind node s) v)
    set;
  mergeMounts = ms: {
    dev = concatStringsSep "" (map (m: m.dev or "") ms);
    fs = foldl' (a: m: a // (m.fs or { })) { } ms;
  };

  # The common options and internals of every disko node type.
  # `opts` are the user-facing options (defaults // user // typed children),
  # `inner` the type's internal options; `args` what the module system
  # passes (name, and for content nodes parent and device).
  node = args: opts: inner:
    let
      self = hooks // opts // {
        _create = script "Create" self (inner.create or "");
        _mount = mountScripts "Mount" self (inner.mount or { });
        _unmount = mountScripts "Unmount" self (inner.unmount or { });
        _config = inner.config or [ ];
        _meta = inner.meta;
        _pkgs = inner.pkgs;
      } // optionalAttrs (args ? parent) { _parent = args.parent; }
      // (inner.extra or { });
    in
    self;

  # Finishes a node built by `build` (a function of the node itself, so that
  # defaults can read final values and children can point back up).
  fix = args: build:
    let
      self = build self (withModule self args);
    in
    self;

  contentPkgs = c: pkgs: if c == null then [ ] else c._pkgs pkgs;
  contentMeta = c: dev: if c == null then { } else c._meta dev;
  contentMount = c: if c == null then { } else c._mount;
  contentUnmount = c: if c == null then { } else c._unmount;
  contentConfig = c: optional (c != null) c._config;
  contentCreate = c: if c == null then "" else c._create;

  # --- content types (what a disk, partition, LV, LUKS or md device holds) ---
  partitionTypes = [ "bcachefs" "btrfs" "filesystem" "zfs" "mdraid" "luks" "lvm_pv" "swap" ];
  deviceTypes = partitionTypes ++ [ "table" "gpt" ];

  mkContent = allowed: path: args: user:
    if user == null then null
    else if !(isAttrs user) then throw "disko.devices${path}: content must be an attribute set"
    else if !(user ? type) then required path "type"
    else if !(elem user.type allowed) then throw "disko.devices${path}.type: \"${user.type}\" is not one of ${concatStringsSep ", " allowed}"
    else contentTypes.${user.type} path (args // { name = "content"; }) user;
  partitionContent = mkContent partitionTypes;
  deviceContent = mkContent deviceTypes;

  contentTypes = {
    filesystem = path: args: user: fix args (self: me: node args
      ({
        type = "filesystem";
        device = args.device;
        extraArgs = [ ];
        mountOptions = [ "defaults" ];
        mountpoint = null;
        format = required path "format";
      } // user)
      {
        meta = functor (_: { });
        # disko declares this one without a type: a plain lambda.
        pkgs = pkgs: [ pkgs.util-linux pkgs.gnugrep ]
          ++ ({ vfat = [ pkgs.dosfstools ]; ext2 = [ pkgs.e2fsprogs ]; ext3 = [ pkgs.e2fsprogs ]; ext4 = [ pkgs.e2fsprogs ]; xfs = [ pkgs.xfsprogs ]; btrfs = [ pkgs.btrfs-progs ]; }.${self.format} or [ ]);
        create = "mkfs.${self.format} ${concatStringsSep " " self.extraArgs} ${self.device}";
        mount = optionalAttrs (self.mountpoint != null) {
          fs.${self.mountpoint} = "mount ${self.device} ${rootMountPoint}${self.mountpoint} -t ${self.format} -o ${concatStringsSep "," self.mountOptions}";
        };
        unmount = optionalAttrs (self.mountpoint != null) {
          fs.${self.mountpoint} = "umount ${rootMountPoint}${self.mountpoint}";
        };
        config = optional (self.mountpoint != null) {
          fileSystems.${self.mountpoint} = { inherit (self) device; fsType = self.format; options = self.mountOptions; };
        };
      });

    swap = path: args: user: fix args (self: me: node args
      ({
        type = "swap";
        device = args.device;
        discardPolicy = null;
        extraArgs = [ ];
        mountOptions = [ "defaults" ];
        priority = null;
        randomEncryption = false;
        resumeDevice = false;
      } // user)
      {
        meta = functor (_: { });
        pkgs = functor (pkgs: [ pkgs.gnugrep pkgs.util-linux ]);
        create = optionalString (!self.randomEncryption) "mkswap ${concatStringsSep " " self.extraArgs} ${self.device}";
        mount = optionalAttrs (!self.randomEncryption) { fs.${self.device} = "swapon ${self.device}"; };
        unmount = optionalAttrs (!self.randomEncryption) { fs.${self.device} = "swapoff ${self.device}"; };
        config = [({
          swapDevices = [{
            inherit (self) device discardPolicy priority;
            randomEncryption = { enable = self.randomEncryption; allowDiscards = self.discardPolicy != null; };
            options = self.mountOptions;
          }];
        } // optionalAttrs self.resumeDevice { boot.resumeDevice = self.device; })];
      });

    # A member of a VG, an md array, a zpool or a bcachefs filesystem: the
    # device only registers itself: option `key` names the `kind` device it joins.
    lvm_pv = member "lvm_pv" "vg" "lvm_vg" (pkgs: [ pkgs.gnugrep pkgs.lvm2 ]);
    mdraid = member "mdraid" "name" "mdadm" (pkgs: [ pkgs.mdadm ]);
    zfs = member "zfs" "pool" "zpool" (pkgs: [ pkgs.zfs ]);
    bcachefs = path: args: user: member "bcachefs" "filesystem" "bcachefs_filesystems" (_: [ ]) path args
      ({ extraFormatArgs = [ ]; label = ""; } // user);

    btrfs = path: args: user: fix args (self: me:
      let
        swapFiles = mapAttrs (n: s: { path = n; priority = null; options = [ "defaults" ]; size = required "${path}.swap.${n}" "size"; } // s);
        subvolumes = mapAttrs
          (n: s: {
            name = n;
            type = "btrfs_subvol";
            extraArgs = [ ];
            mountOptions = [ "defaults" ];
            mountpoint = null;
          } // s // { swap = swapFiles (s.swap or { }); })
          (user.subvolumes or { });
        mounted = filter (s: s.mountpoint != null) (attrValues self.subvolumes);
      in
      node args
        ({
          type = "btrfs";
          device = args.device;
          extraArgs = [ ];
          mountOptions = [ "defaults" ];
          mountpoint = null;
        } // user // {
          inherit subvolumes;
          swap = swapFiles (user.swap or { });
        })
        {
          meta = functor (_: { });
          pkgs = functor (pkgs: [ pkgs.btrfs-progs pkgs.gnugrep ]);
          create = "mkfs.btrfs ${self.device} ${concatStringsSep " " self.extraArgs}"
            + concatStringsSep "" (map (s: "\nbtrfs subvolume create ${s.name}") (attrValues self.subvolumes));
          mount.fs = listToAttrs (map (s: { name = s.mountpoint; value = "mount ${self.device} ${rootMountPoint}${s.mountpoint} -o subvol=${s.name}"; }) mounted)
            // optionalAttrs (self.mountpoint != null) { ${self.mountpoint} = "mount ${self.device} ${rootMountPoint}${self.mountpoint}"; };
          unmount.fs = listToAttrs (map (s: { name = s.mountpoint; value = "umount ${rootMountPoint}${s.mountpoint}"; }) mounted)
            // optionalAttrs (self.mountpoint != null) { ${self.mountpoint} = "umount ${rootMountPoint}${self.mountpoint}"; };
          config = [
            (map (s: { fileSystems.${s.mountpoint} = { inherit (self) device; fsType = "btrfs"; options = s.mountOptions ++ [ "subvol=${s.name}" ]; }; }) mounted)
            (optional (self.mountpoint != null) { fileSystems.${self.mountpoint} = { inherit (self) device; fsType = "btrfs"; options = self.mountOptions; }; })
          ];
        });

    luks = path: args: user: fix args (self: me: node args
      ({
        type = "luks";
        device = args.device;
        name = required path "name";
        keyFile = null;
        passwordFile = null;
        askPassword = self.keyFile == null && self.passwordFile == null && !(self.settings ? keyFile);
        settings = { };
        additionalKeyFiles = [ ];
        initrdUnlock = true;
        extraFormatArgs = [ ];
        extraOpenArgs = [ ];
      } // user // {
        content = deviceContent "${path}.content" { parent = me; device = "/dev/mapper/${self.name}"; } (user.content or null);
      })
      {
        meta = functor (contentMeta self.content);
        pkgs = functor (pkgs: [ pkgs.gnugrep pkgs.cryptsetup ] ++ contentPkgs self.content pkgs);
        create = "cryptsetup -q luksFormat ${self.device} ${concatStringsSep " " self.extraFormatArgs}\ncryptsetup open ${self.device} ${self.name}\n"
          + contentCreate self.content;
        mount = let c = contentMount self.content; in { dev = "cryptsetup open ${self.device} ${self.name}\n" + (c.dev or ""); fs = c.fs or { }; };
        unmount = let c = contentUnmount self.content; in { dev = (c.dev or "") + "cryptsetup close ${self.name}\n"; fs = c.fs or { }; };
        config = optional self.initrdUnlock [{ boot.initrd.luks.devices.${self.name} = { inherit (self) device; } // self.settings; }]
          ++ contentConfig self.content;
      });

    gpt = path: args: user: fix args (self: me:
      let
        gptParent = args.parent;
        sorted = sort (a: b: a.priority < b.priority) (attrValues self.partitions);
        position = name: let go = i: l: if l == [ ] then 0 else if (head l).name == name then i else go (i + 1) (tail l); in go 1 sorted;
        partition = key: p:
          let
            part = {
              type = if part.content != null && part.content.type == "swap" then "8200" else "8300";
              attributes = [ ];
              device =
                if part.uuid != null then "/dev/disk/by-partuuid/${part.uuid}"
                else if gptParent.type == "mdadm" then "/dev/disk/by-id/md-name-any:${gptParent.name}-part${toString part._index}"
                else "/dev/disk/by-partlabel/${udevEscape part.label}";
              priority =
                if part.size == "100%" then 9001
                else if part.type == "EF02" then 100
                else 1000;
              name = key;
              uuid = null;
              label = gptLabel "${gptParent.type}-${gptParent.name}-${part.name}";
              size = "0";
              alignment = if lastChar part.start == "s" || lastChar part.end == "s" then 1 else 0;
              start = "0";
              end = if part.size == "100%" then "-0" else "+${part.size}";
              _index = position part.name;
            } // p // {
              content = partitionContent "${path}.partitions.${key}.content" { parent = me; device = part.device; } (p.content or null);
              hybrid = if (p.hybrid or null) == null then null else hybrid part p.hybrid;
            };
          in
          part;
        hybrid = part: h:
          let
            hp = { mbrPartitionType = null; mbrBootableFlag = false; } // h // {
              _create = optionalString (hp.mbrPartitionType != null) "sfdisk --label-nested dos --part-type ${args.device} ${toString part._index} ${hp.mbrPartitionType}\n"
                + optionalString hp.mbrBootableFlag "sfdisk --label-nested dos --activate ${args.device} ${toString part._index}\n";
            };
          in
          hp;
        withContent = filter (p: p.content != null) (attrValues self.partitions);
      in
      node args
        ({
          type = "gpt";
          device = args.device;
          efiGptPartitionFirst = true;
        } // user // {
          partitions = mapAttrs partition (user.partitions or { });
        })
        {
          meta = functor (dev: deepMergeAll (map (p: p.content._meta dev) withContent));
          pkgs = functor (pkgs: [ pkgs.gptfdisk pkgs.systemdMinimal pkgs.parted ] ++ concatLists (map (p: p.content._pkgs pkgs) withContent));
          create = concatStringsSep "" (map (p: "sgdisk --new=${toString p._index}:${p.start}:${p.end} --change-name=${toString p._index}:${p.label} --typecode=${toString p._index}:${p.type} ${self.device}\n") sorted)
            + concatStringsSep "" (map (p: if p.hybrid == null then "" else p.hybrid._create) sorted)
            + concatStringsSep "" (map (p: contentCreate p.content) sorted);
          mount = mergeMounts (map (p: p.content._mount) withContent);
          unmount = mergeMounts (map (p: p.content._unmount) withContent);
          config = map (p: contentConfig p.content) (attrValues self.partitions)
            ++ optional (builtins.any (p: p.type == "EF02") (attrValues self.partitions)) { boot.loader.grub.devices = [ self.device ]; };
        });

    # The legacy partition table type: partitions are a list.
    table = path: args: user: fix args (self: me:
      let
        partition = { index, value }:
          let
            part = {
              part-type = "primary";
              fs-type = null;
              name = required "${path}.partitions[${toString index}]" "name";
              start = "0%";
              end = "100%";
              flags = [ ];
              bootable = false;
              _index = index;
            } // value // {
              content = partitionContent "${path}.partitions[${toString index}].content" { parent = me; device = numbered self.device index; } (value.content or null);
            };
          in
          part;
        withContent = filter (p: p.content != null) self.partitions;
      in
      node args
        ({
          type = "table";
          device = args.device;
          format = "gpt";
        } // user // {
          partitions = map partition (indexed (user.partitions or [ ]));
        })
        {
          meta = functor (dev: deepMergeAll (map (p: p.content._meta dev) withContent));
          pkgs = functor (pkgs: [ pkgs.parted pkgs.systemdMinimal ] ++ concatLists (map (p: p.content._pkgs pkgs) withContent));
          create = "parted -s ${self.device} -- mklabel ${self.format}\n"
            + concatStringsSep "" (map (p: "parted -s ${self.device} -- mkpart ${if self.format == "gpt" then p.name else p.part-type} ${p.start} ${p.end}\n") self.partitions)
            + concatStringsSep "" (map (p: contentCreate p.content) self.partitions);
          mount = mergeMounts (map (p: p.content._mount) withContent);
          unmount = mergeMounts (map (p: p.content._unmount) withContent);
          config = map (p: contentConfig p.content) self.partitions;
        });
  };

  member = type: key: kind: pkgs: path: args: user: fix args (self: me: node args
    ({
      inherit type;
      device = args.device;
      ${key} = required path key;
    } // user)
    {
      meta = functor (dev: { deviceDependencies.${kind}.${self.${key}} = [ dev ]; });
      pkgs = functor pkgs;
      create = "echo ${self.device} >>\"$disko_devices_dir\"/${kind}_${self.${key}}";
      config = if type == "bcachefs" then { } else [ ];
    });

  # --- top-level device types ---
  disk = key: user: fix { name = key; } (self: me: node { name = key; }
    ({
      name = replaceStrings [ "/" ] [ "_" ] key;
      type = "disk";
      device = required ".disk.${key}" "device";
      destroy = true;
      imageName = self.name;
      imageSize = "2G";
    } // user // {
      content = deviceContent ".disk.${key}.content" { parent = me; device = self.device; } (user.content or null);
    })
    {
      meta = contentMeta self.content [ "disk" self.name ];
      pkgs = functor (pkgs: [ pkgs.jq ] ++ contentPkgs self.content pkgs);
      create = contentCreate self.content;
      mount = contentMount self.content;
      unmount = contentUnmount self.content;
      config = contentConfig self.content;
    });

  mdadm = key: user: fix { name = key; } (self: me: node { name = key; }
    ({
      name = key;
      type = "mdadm";
      level = 1;
      metadata = "default";
      extraArgs = [ ];
    } // user // {
      content = deviceContent ".mdadm.${key}.content" { parent = me; device = "/dev/md/${self.name}"; } (user.content or null);
    })
    {
      meta = contentMeta self.content [ "mdadm" self.name ];
      pkgs = functor (pkgs: [ pkgs.parted ] ++ contentPkgs self.content pkgs);
      create = "mdadm --create /dev/md/${self.name} --level=${toString self.level} --metadata=${self.metadata}\n" + contentCreate self.content;
      mount = contentMount self.content;
      unmount = let c = contentUnmount self.content; in { fs = c.fs or { }; dev = (c.dev or "") + "mdadm --stop /dev/md/${self.name}\n"; };
      config = [{ boot.swraid.enable = true; }] ++ contentConfig self.content;
    });

  lvm_vg = key: user: fix { name = key; } (self: me:
    let
      lv = n: l:
        let
          v = {
            name = n;
            priority = (if v.lvm_type == "thin-pool" then 501 else 1000) + (if hasInfix "100%" v.size then 251 else 0);
            size = required ".lvm_vg.${key}.lvs.${n}" "size";
            lvm_type = null;
            extraArgs = [ ];
            pool = null;
          } // l // {
            content = partitionContent ".lvm_vg.${key}.lvs.${n}.content" { parent = me; device = "/dev/${self.name}/${v.name}"; } (l.content or null);
          };
        in
        v;
      lvs = attrValues self.lvs;
      withContent = filter (l: l.content != null) lvs;
      modules = [ "dm-snapshot" ] ++ map (l: "dm-${l.lvm_type}") (filter (l: l.lvm_type != null && l.lvm_type != "thinlv") lvs);
    in
    node { name = key; }
      ({
        name = key;
        type = "lvm_vg";
      } // user // {
        lvs = mapAttrs lv (user.lvs or { });
      })
      {
        meta = deepMergeAll (map (l: l.content._meta [ "lvm_vg" self.name ]) withContent);
        pkgs = functor (pkgs: concatLists (map (l: l.content._pkgs pkgs) withContent));
        create = "vgcreate ${self.name}\n"
          + concatStringsSep "" (map (l: "lvcreate -n ${l.name} ${l.size} ${self.name}\n") (sort (a: b: a.priority < b.priority) lvs))
          + concatStringsSep "" (map (l: contentCreate l.content) lvs);
        mount = let m = mergeMounts (map (l: l.content._mount) withContent); in m // { dev = "vgchange -a y\n" + m.dev; };
        unmount = let m = mergeMounts (map (l: l.content._unmount) withContent); in m // { dev = m.dev + "vgchange -a n\n"; };
        config = [{ boot.initrd.kernelModules = modules; }] ++ map (l: contentConfig l.content) lvs;
      });

  nodev = key: user: fix { name = key; } (self: me: node { name = key; }
    ({
      type = "nodev";
      fsType = required ".nodev.${key}" "fsType";
      device = if elem self.fsType [ "proc" "sysfs" "tmpfs" "ramfs" "devtmpfs" "devpts" ] then self.fsType else "none";
      mountpoint = key;
      mountOptions = [ "defaults" ];
    } // user)
    {
      meta = { };
      pkgs = functor (_: [ ]);
      mount = optionalAttrs (self.mountpoint != null) { fs.${self.mountpoint} = "mount -t ${self.fsType} ${self.device} ${rootMountPoint}${self.mountpoint}"; };
      unmount = optionalAttrs (self.mountpoint != null) { fs.${self.mountpoint} = "umount ${rootMountPoint}${self.mountpoint}"; };
      config = optional (self.mountpoint != null) { fileSystems.${self.mountpoint} = { inherit (self) device fsType; options = self.mountOptions; }; };
    });

  zpool = key: user: fix { name = key; } (self: me:
    let
      vdev = v: { mode = ""; members = required ".zpool.${key}.mode.topology" "members"; } // v;
      topology = n: t:
        if (t.type or null) != "topology" then throw "disko.devices.zpool.${key}.mode.${n}.type must be \"topology\""
        else {
          type = "topology";
          vdev = [ ];
          spare = [ ];
          log = [ ];
          dedup = [ ];
          special = [ ];
          cache = [ ];
        } // t // {
          vdev = map vdev (t.vdev or [ ]);
          log = map vdev (t.log or [ ]);
          dedup = map vdev (t.dedup or [ ]);
          special = let s = t.special or [ ]; in if isList s then map vdev s else if s == null then null else vdev s;
        };
      dataset = n: d:
        if !(d ? type) then required ".zpool.${key}.datasets.${n}" "type"
        else if d.type == "zfs_fs" then zfs_fs key n me d
        else if d.type == "zfs_volume" then zfs_volume key n me d
        else throw "disko.devices.zpool.${key}.datasets.${n}.type: \"${d.type}\" is not one of zfs_fs, zfs_volume";
      datasets = attrValues self.datasets;
    in
    node { name = key; }
      ({
        name = key;
        type = "zpool";
        mode = "";
        options = { };
        rootFsOptions = { };
        mountpoint = null;
        mountOptions = [ "defaults" ];
      } // user // {
        mode = let m = user.mode or ""; in if isString m then m else mapAttrs topology m;
        datasets = mapAttrs dataset (user.datasets or { }) // {
          __root = zfs_fs key "__root" me ({
            _name = self.name;
            _createFilesystem = false;
            type = "zfs_fs";
            inherit (self) mountpoint mountOptions;
            options = self.rootFsOptions;
          } // ((user.datasets or { }).__root or { }));
        };
      })
      {
        meta = deepMergeAll (map (d: d._meta [ "zpool" self.name ]) datasets);
        pkgs = functor (pkgs: [ pkgs.gnugrep pkgs.util-linux ] ++ concatLists (map (d: d._pkgs pkgs) datasets));
        create = "zpool create -f ${self.name} -R ${rootMountPoint}\n" + concatStringsSep "" (map (d: d._create) datasets);
        mount = { dev = "zpool import -l -R ${rootMountPoint} ${self.name}\n" + concatStringsSep "" (map (d: d._mount.dev or "") datasets); fs = foldl' (a: d: a // (d._mount.fs or { })) { } datasets; };
        unmount = { dev = concatStringsSep "" (map (d: d._unmount.dev or "") datasets) + "zpool export ${self.name}\n"; fs = foldl' (a: d: a // (d._unmount.fs or { })) { } datasets; };
        config = map (d: d._config) datasets;
      });

  zfs_fs = pool: key: parent: user:
    let args = { name = key; inherit parent; }; in
    fix args (self: me: node args
      ({
        name = key;
        _name = "${parent.name}/${self.name}";
        type = "zfs_fs";
        options = { };
        mountOptions = [ "defaults" ];
        mountpoint = null;
        _createFilesystem = true;
      } // user)
      {
        meta = functor (_: { });
        pkgs = functor (pkgs: [ pkgs.util-linux ]);
        create = optionalString self._createFilesystem "zfs create -up ${self._name}";
        mount = optionalAttrs (self.mountpoint != null) { fs.${self.mountpoint} = "mount -t zfs ${self._name} ${rootMountPoint}${self.mountpoint}"; };
        unmount = optionalAttrs (self.mountpoint != null) { fs.${self.mountpoint} = "umount ${rootMountPoint}${self.mountpoint}"; };
        config = optional (self.mountpoint != null) { fileSystems.${self.mountpoint} = { device = self._name; fsType = "zfs"; options = self.mountOptions; }; };
      });

  zfs_volume = pool: key: parent: user:
    let args = { name = key; inherit parent; }; in
    fix args (self: me: node args
      ({
        name = key;
        type = "zfs_volume";
        options = { };
        extraArgs = [ ];
        mountOptions = [ "defaults" ];
        size = null;
      } // user // {
        content = partitionContent ".zpool.${pool}.datasets.${key}.content" { parent = me; device = "/dev/zvol/${parent.name}/${self.name}"; } (user.content or null);
      })
      {
        meta = functor (contentMeta self.content);
        pkgs = functor (pkgs: [ pkgs.util-linux ] ++ contentPkgs self.content pkgs);
        create = "zfs create ${parent.name}/${self.name} -V ${toString self.size}\n" + contentCreate self.content;
        mount = contentMount self.content;
        unmount = contentUnmount self.content;
        config = contentConfig self.content;
      });

  bcachefs_filesystem = key: user: fix { name = key; } (self: me:
    let
      h = hashString "sha256" self.name;
      subvolume = n: s: {
        name = n;
        type = "bcachefs_subvolume";
        mountOptions = [ "X-mount.mkdir" "X-mount.subdir=${removePrefix "/" n}" ];
        mountpoint = null;
      } // s;
      mounted = filter (s: s.mountpoint != null) (attrValues self.subvolumes);
      dev = "/dev/disk/by-uuid/${self.uuid}";
    in
    node { name = key; }
      ({
        name = key;
        type = required ".bcachefs_filesystems.${key}" "type";
        extraFormatArgs = [ ];
        mountOptions = [ "X-mount.mkdir" ];
        mountpoint = null;
        uuid = "${substring 0 8 h}-${substring 8 4 h}-${substring 12 4 h}-${substring 16 4 h}-${substring 20 12 h}";
        passwordFile = null;
      } // user // {
        subvolumes = mapAttrs subvolume (user.subvolumes or { });
      })
      {
        meta = functor (_: { });
        pkgs = functor (pkgs: [ pkgs.bcachefs-tools pkgs.util-linux ]);
        create = "bcachefs format --uuid=${self.uuid} ${concatStringsSep " " self.extraFormatArgs}";
        mount.fs = listToAttrs (map (s: { name = s.mountpoint; value = "mount -t bcachefs ${dev} ${rootMountPoint}${s.mountpoint}"; }) mounted)
          // optionalAttrs (self.mountpoint != null) { ${self.mountpoint} = "mount -t bcachefs ${dev} ${rootMountPoint}${self.mountpoint}"; };
        unmount.fs = listToAttrs (map (s: { name = s.mountpoint; value = "umount ${rootMountPoint}${s.mountpoint}"; }) mounted)
          // optionalAttrs (self.mountpoint != null) { ${self.mountpoint} = "umount ${rootMountPoint}${self.mountpoint}"; };
        config = optional (self.mountpoint != null) { fileSystems.${self.mountpoint} = { device = dev; fsType = "bcachefs"; options = unique ([ "X-mount.mkdir" ] ++ self.mountOptions); }; }
          ++ map (s: { fileSystems.${s.mountpoint} = { device = dev; fsType = "bcachefs"; options = unique s.mountOptions; }; }) mounted;
        # disko gives a top-level bcachefs filesystem a `_parent` option whose
        # default is a module argument nobody passes: forcing it fails.
        extra._parent = throw "disko.devices.bcachefs_filesystems.${key}._parent: attribute 'parent' missing";
      });

  # --- the top level ---
  collections = {
    bcachefs_filesystems = bcachefs_filesystem;
    inherit disk mdadm zpool lvm_vg nodev;
  };
  unknown = filter (n: !(hasAttr n collections)) (attrNames layout);
  devices = mapAttrs (kind: mk: mapAttrs mk (layout.${kind} or { })) collections;
  all = concatLists (map attrValues (attrValues devices));
  configs = flatten (map (d: d._config) all);
  configKeys = unique (concatLists (map attrNames configs));
  create = ''
    set -efux
    disko_devices_dir=$(mktemp -d)
    ${concatStringsSep "" (map (d: d._create) all)}
  '';
  mount = ''
    set -efux
    ${concatStringsSep "" (map (d: d._mount.dev or "") all)}
    ${concatStringsSep "" (concatLists (map (d: attrValues (d._mount.fs or { })) all))}
  '';
  unmount = ''
    set -efux
    ${concatStringsSep "" (concatLists (map (d: attrValues (d._unmount.fs or { })) all))}
    ${concatStringsSep "" (map (d: d._unmount.dev or "") all)}
  '';
  wiped = concatStringsSep " " (catAttrs "device" (filter (d: d.destroy) (attrValues devices.disk)));
  destroy = ''
    umount -Rv ${rootMountPoint} || :
    for dev in ${wiped}; do wipefs --all "$dev"; done
  '';
  top = devices // {
    _meta = deepMergeAll (map (d: d._meta) all);
    _packages = pkgs: unique (concatLists (map (d: d._pkgs pkgs) all) ++ [ pkgs.coreutils-full ]);
    _scripts = { pkgs, checked ? false }:
      mapAttrs (n: s: if devices.disk == { } then throw "No disks defined" else derivation { name = "disko-${n}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" s ]; })
        { destroy = destroy; format = create; mount = mount; unmount = unmount; };
    _create = create;
    _mount = mount;
    _unmount = unmount;
    _destroy = destroy;
    _legacyDestroy = destroy;
    _disko = destroy + create + mount;
    _destroyFormatMount = destroy + create + mount;
    _formatMount = create + mount;
    _config = listToAttrs (map (k: { name = k; value = { _type = "merge"; contents = catAttrs k configs; }; }) configKeys);
  };
in
if unknown != [ ] then throw "disko.devices: unknown collection(s) ${concatStringsSep ", " unknown}"
else top
