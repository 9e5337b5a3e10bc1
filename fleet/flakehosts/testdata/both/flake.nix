# A flake moving from colmena to deploy-rs: both outputs, sharing node web.
# Shapes as in ../deployrs and ../colmena (trimmed: the colmenaHive here is
# already evaluated, as makeHive returns it).
{
  outputs = { self }:
    let
      system = "x86_64-linux";
      drv = name: derivation { inherit name system; builder = "/bin/sh"; args = [ "-c" "echo $name > $out" ]; };
      node = name: deployment: { config = { inherit deployment; system.build.toplevel = drv "nixos-system-${name}-24.05"; }; };
    in {
      deploy.nodes.web = {
        hostname = "web.example.org";
        sshUser = "deploy";
        profiles.system = { user = "root"; path = drv "activatable-nixos-system-web-24.05"; };
      };
      colmenaHive = rec {
        __schema = "v0.5";
        nodes = {
          web = node "web" { targetHost = "old-web.example.org"; targetUser = "root"; targetPort = null; tags = [ "web" ]; };
          cache = node "cache" { targetHost = "cache.example.org"; targetUser = "root"; targetPort = 2200; tags = [ "infra" ]; };
        };
        toplevel = builtins.mapAttrs (_: v: v.config.system.build.toplevel) nodes;
        deploymentConfig = builtins.mapAttrs (_: v: v.config.deployment) nodes;
      };
    };
}
