{
  description = "nixos-via test systems: NixOS stand-ins built from this Debian host's binaries, without nixpkgs";

  # No inputs: Debian's Nix 2.8 builds this with the sandbox off; the builders
  # are small shell scripts that pack host binaries (busybox, OpenSSH, Nix,
  # cryptsetup, lvm, mdadm, the cloud kernel, systemd-boot) into the store.
  outputs = { self }:
    let
      system = "x86_64-linux";
      release = "25.05";
      nixosVersion = "${release}.19700101.nixos-via-test";

      # Each builder file is its own store path, so editing one rebuilds
      # only what uses it (not everything whenever the repository changes).
      file = name: builtins.path { path = ./builders + "/${name}"; name = "nixos-via-${name}"; };
      build = name: builder: attrs: derivation ({
        inherit name system;
        builder = "/bin/sh";
        args = [ (file builder) ];
      } // attrs);

      tools = build "nixos-via-test-tools" "tools.sh" { udhcpcScript = file "udhcpc.script"; };
      kernel = build "linux-debian-cloud" "kernel.sh" { };
      initrd = build "nixos-via-test-initrd" "initrd.sh" {
        inherit kernel;
        init = file "stage-1-init.sh";
      };

      # Tests boot this with blank disks to partition and fill them (the
      # host kernel may lack GPT, vfat, dm-crypt and md); not part of a system.
      prep-initrd = build "nixos-via-test-prep-initrd" "initrd.sh" {
        inherit kernel;
        init = file "prep-init.sh";
        extraBins = "/usr/sbin/sgdisk /usr/sbin/mke2fs /usr/sbin/mkfs.fat";
      };

      layouts = import ./layouts.nix;

      # What disko's NixOS module makes of a layout: its defaults filled in
      # and its internal options (functions, scripts, _parent cycles) on
      # every node, as in a real user's flake (see disko-module.nix).
      diskoModule = import ./disko-module.nix;
      byPartlabel = "/dev/disk/by-partlabel";
      luksParam = "luks=${byPartlabel}/disk-main-luks:crypted:/tmp/secret.key";
      efiExt4 = { layout = layouts.efi-ext4; params = [ "root=${byPartlabel}/disk-main-root" ]; };

      # hardware-config imports ./hardware-configuration.nix, the file
      # `nixos-via --generate-hardware-config nixos-generate-config PATH`
      # writes (the e2e test runs it on a copy of this flake in a git work
      # tree); evaluating it before that file exists fails. Its initrd
      # module list reaches the kernel command line, so the installed
      # system shows what the generated file said.
      hardwareConfig =
        let
          hwFile = ./hardware-configuration.nix;
          hw =
            if builtins.pathExists hwFile
            then import hwFile { config = { }; lib.mkDefault = x: x; pkgs = { }; modulesPath = "/no-modules"; }
            else throw "nixosConfigurations.hardware-config imports ./hardware-configuration.nix, which is not there: run nixos-via with --generate-hardware-config nixos-generate-config";
          modules = builtins.concatStringsSep "," hw.boot.initrd.availableKernelModules;
        in
        if hw.nixpkgs.hostPlatform != system
        then throw "hardware-configuration.nix is for ${hw.nixpkgs.hostPlatform}, this flake builds ${system}"
        else efiExt4 // { params = efiExt4.params ++ [ "nixos_via_test.initrd_modules=${modules}" ]; };

      scenarios = {
        demo = efiExt4;
        efi-ext4 = efiExt4;
        luks-keyfile = { layout = layouts.luks-keyfile; params = [ luksParam "root=/dev/mapper/crypted" ]; };
        lvm-on-luks = { layout = layouts.lvm-on-luks; params = [ luksParam "lvm=1" "root=/dev/mapper/vtpool-root" ]; };
        raid1 = { layout = layouts.raid1; params = [ "md=1" "root=/dev/md/raid1" ]; };
        rescue = efiExt4;
        small-ram = efiExt4;
        resume = efiExt4;
        sudo-user = efiExt4;
        extras = efiExt4;
        hardware-config = hardwareConfig;
        # As many real configurations: root may not log in, an admin user
        # of group wheel may, and sshd listens on another port (a fixed
        # one, forwarded to the same port on the test machine).
        admin-port = efiExt4 // { ssh = { port = 40022; permitRootLogin = "no"; users = [ "alice" ]; }; };
        # The installer fetches the closure from this binary cache itself:
        # the VM's QEMU forwards 10.0.2.100:80 (guestfwd) to a server the
        # e2e test runs on 127.0.0.1. Only the guest ever uses this URL.
        substitute = efiExt4 // { substituters = [ "http://10.0.2.100/" ]; };
        # Deployed onto an installed efi-ext4 (vmtests/e2e deploy test):
        # the next configuration (another hostname, sshd with one more
        # setting, so a switch restarts it), and one that drops our key, so
        # logging in after it fails and magic rollback must undo it.
        efi-ext4-next = efiExt4 // { sshExtra = "ClientAliveInterval 60"; };
        efi-ext4-nokey = efiExt4 // { rootKey = false; };
      };

      # sshd as services.openssh has it: port 22, root by key only, no
      # other users, unless the scenario says otherwise.
      sshOf = s: { port = 22; permitRootLogin = "prohibit-password"; users = [ ]; } // (s.ssh or { });
      testKey = builtins.readFile ./keys/snakeoil_ed25519.pub;
      # What NixOS's LUKS support gets from disko's module for the luks
      # scenarios: the key file exists at install time only, so the initrd
      # asks for the passphrase at boot.
      luksDevices = hostName:
        if builtins.elem hostName [ "luks-keyfile" "lvm-on-luks" ]
        then { crypted = { device = "${byPartlabel}/disk-main-luks"; keyFile = "/tmp/secret.key"; }; }
        else { };

      toplevel = hostName: s: build "nixos-system-${hostName}-${nixosVersion}" "toplevel.sh" {
        inherit tools kernel initrd hostName nixosVersion release;
        kernelParams = builtins.concatStringsSep " " ([ "console=ttyS0" "loglevel=4" ] ++ s.params);
        stage2 = file "stage-2-init.sh";
        activate = file "activate.sh";
        switch = file "switch-to-configuration.sh";
        authorizedKeys = builtins.path { path = ./keys/snakeoil_ed25519.pub; name = "nixos-via-test-authorized-key"; };
        sshPort = toString (sshOf s).port;
        permitRootLogin = (sshOf s).permitRootLogin;
        sshUsers = builtins.concatStringsSep " " (sshOf s).users;
        sshExtra = s.sshExtra or "";
        rootKey = if s.rootKey or true then "1" else "";
      };

      nixosSystem = hostName: s: {
        config = {
          system.build.toplevel = toplevel hostName s;
          # Module-shaped like a real disko user's config.disko.devices,
          # except in efi-ext4, which keeps the plain attribute set that a
          # flake without disko's module (or an exported layout) has: the
          # tests cover both shapes.
          disko.devices = if hostName == "efi-ext4" then s.layout else diskoModule s.layout;
          networking.hostName = hostName;
          boot.kernelParams = [ "console=ttyS0" "loglevel=4" ] ++ s.params;
          # The options nixos-via reads to know how the installed system
          # comes up, with NixOS's names and defaults.
          services.openssh = {
            enable = true;
            ports = [ (sshOf s).port ];
            settings.PermitRootLogin = (sshOf s).permitRootLogin;
          };
          users.users = { root.openssh.authorizedKeys.keys = if s.rootKey or true then [ testKey ] else [ ]; }
            // builtins.listToAttrs (map (u: { name = u; value = { isNormalUser = true; extraGroups = [ "wheel" ]; openssh.authorizedKeys.keys = [ testKey ]; }; }) (sshOf s).users);
          boot.initrd.luks.devices = luksDevices hostName;
          boot.initrd.network.ssh = { enable = false; port = 22; };
          boot.initrd.secrets = { };
          # NixOS's default is cache.nixos.org; these systems have none.
          nix.settings.substituters = s.substituters or [ ];
        };
      };
    in
    {
      nixosConfigurations = builtins.mapAttrs nixosSystem scenarios;
      packages.${system} = { inherit tools kernel initrd prep-initrd; };
    };
}
