# deploy.nodes shaped as deploy-rs reads it (src/data.rs: generic settings at
# the top, node and profile level; hostname and profiles per node) and as its
# lib builds profile paths (flake.nix lib.activate.nixos: a buildEnv named
# activatable-<toplevel name> of the toplevel, deploy-rs-activate and
# activate-rs). Stand-ins need no nixpkgs: derivations from /bin/sh, never
# built by the tests.
{
  outputs = { self }:
    let
      system = "x86_64-linux";
      drv = name: derivation { inherit name system; builder = "/bin/sh"; args = [ "-c" "echo $name > $out" ]; };
      nixosSystem = name: { config.system.build.toplevel = drv "nixos-system-${name}-24.05"; };
      activateNixos = base:
        let top = base.config.system.build.toplevel; in
        derivation {
          name = "activatable-" + top.name;
          inherit system;
          builder = "/bin/sh";
          args = [ "-c" "mkdir $out" ];
          pkgs = builtins.toJSON [
            { paths = [ top ]; priority = 5; }
            { paths = [ (drv (top.name + "-activate-path")) ]; priority = 5; }
            { paths = [ (drv (top.name + "-activate-rs")) ]; priority = 5; }
          ];
        };
      activateCustom = base: derivation { name = "activatable-" + base.name; inherit system; builder = "/bin/sh"; args = [ "-c" "mkdir $out" ]; };
    in {
      nixosConfigurations.web-system = nixosSystem "web";
      nixosConfigurations.db = nixosSystem "db";

      deploy = {
        sshUser = "deploy";
        sshOpts = [ "-i" "~/.ssh/fleet" ];
        nodes.web = {
          hostname = "web.example.org";
          sshOpts = [ "-p" "2222" ];
          profiles.system = {
            user = "root";
            path = activateNixos self.nixosConfigurations.web-system;
          };
        };
        nodes.db = {
          hostname = "db.example.org";
          sshOpts = [ "-o" "StrictHostKeyChecking=accept-new" "-t" ];
          profiles.system = {
            sshUser = "admin";
            user = "root";
            sshOpts = [ "-p2200" ];
            path = activateNixos self.nixosConfigurations.db;
          };
          profiles.hello = {
            user = "hello";
            path = activateCustom (drv "hello");
          };
        };
        # A node with only a user profile: not a NixOS system to deploy.
        nodes.laptop-home = {
          hostname = "laptop.example.org";
          profiles.home = { user = "alice"; path = activateCustom (drv "home"); };
        };
      };
    };
}
