# disko layouts of the test scenarios, written as disko users write them.
let
  esp = {
    size = "256M";
    type = "EF00";
    content = {
      type = "filesystem";
      format = "vfat";
      mountpoint = "/boot";
      mountOptions = [ "umask=0077" ];
    };
  };
  ext4Root = {
    type = "filesystem";
    format = "ext4";
    mountpoint = "/";
  };
  # Install-time key: nixos-via --disk-encryption-keys /tmp/secret.key FILE.
  # The installed initrd looks for it too and, as NixOS does, asks for the
  # passphrase on the console when it is absent (it is never on the disk).
  luks = content: {
    type = "luks";
    name = "crypted";
    extraFormatArgs = [ "--pbkdf pbkdf2" "--pbkdf-force-iterations 1000" ];
    settings.keyFile = "/tmp/secret.key";
    inherit content;
  };
in
{
  efi-ext4 = {
    disk.main = {
      type = "disk";
      device = "/dev/vda";
      content = {
        type = "gpt";
        partitions = {
          ESP = esp;
          root = { size = "100%"; content = ext4Root; };
        };
      };
    };
  };

  luks-keyfile = {
    disk.main = {
      type = "disk";
      device = "/dev/vda";
      content = {
        type = "gpt";
        partitions = {
          ESP = esp;
          luks = { size = "100%"; content = luks ext4Root; };
        };
      };
    };
  };

  lvm-on-luks = {
    disk.main = {
      type = "disk";
      device = "/dev/vda";
      content = {
        type = "gpt";
        partitions = {
          ESP = esp;
          luks = { size = "100%"; content = luks { type = "lvm_pv"; vg = "vtpool"; }; };
        };
      };
    };
    lvm_vg.vtpool = {
      type = "lvm_vg";
      lvs = {
        swap = { size = "128M"; content = { type = "swap"; }; };
        root = { size = "100%FREE"; content = ext4Root; };
      };
    };
  };

  raid1 = {
    disk.one = {
      type = "disk";
      device = "/dev/vda";
      content = {
        type = "gpt";
        partitions = {
          ESP = esp;
          raid = { size = "100%"; content = { type = "mdraid"; name = "raid1"; }; };
        };
      };
    };
    disk.two = {
      type = "disk";
      device = "/dev/vdb";
      content = {
        type = "gpt";
        partitions = {
          raid = { size = "100%"; content = { type = "mdraid"; name = "raid1"; }; };
        };
      };
    };
    mdadm.raid1 = {
      type = "mdadm";
      level = 1;
      content = ext4Root;
    };
  };
}
