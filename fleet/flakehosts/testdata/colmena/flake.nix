# colmenaHive shaped as colmena.lib.makeHive evaluates a raw hive
# (src/nix/hive/eval.nix: __schema "v0.5", nodes.<name> = eval-config
# results, toplevel, deploymentConfig = each node's config.deployment;
# options.nix: targetHost defaults to the node's name, targetUser to "root",
# targetPort to null, tags to []). The stand-in makeHive below evaluates
# the deployment options only (no nixpkgs here): meta and defaults as
# colmena reads them, nodes as attribute sets or functions of
# { name, nodes, ... } // meta.specialArgs.
{
  outputs = { self }:
    let
      system = "x86_64-linux";
      drv = name: derivation { inherit name system; builder = "/bin/sh"; args = [ "-c" "echo $name > $out" ]; };
      makeHive = raw:
        let
          reserved = [ "meta" "network" "defaults" ];
          names = builtins.filter (n: !builtins.elem n reserved) (builtins.attrNames raw);
          meta = raw.meta or { };
          call = name: m: if builtins.isFunction m then m ({ inherit name; nodes = evaluated; } // (meta.specialArgs or { })) else m;
          deployment = name:
            let
              d = (call name (raw.defaults or { })).deployment or { };
              n = (call name raw.${name}).deployment or { };
            in { targetHost = name; targetUser = "root"; targetPort = null; } // d // n
               // { tags = (d.tags or [ ]) ++ (n.tags or [ ]); };
          evaluated = builtins.listToAttrs (map (name: {
            inherit name;
            value.config = {
              deployment = deployment name;
              system.build.toplevel = drv "nixos-system-${name}-24.05";
            };
          }) names);
        in rec {
          __schema = "v0.5";
          nodes = evaluated;
          toplevel = builtins.mapAttrs (_: v: v.config.system.build.toplevel) nodes;
          deploymentConfig = builtins.mapAttrs (_: v: v.config.deployment) nodes;
          metaConfig = { };
        };
    in {
      colmena = {
        meta = {
          nixpkgs = { inherit system; };
          nodeNixpkgs = { };
          specialArgs.site = "eu";
        };
        defaults = { name, ... }: { deployment.tags = [ "all" ]; };
        web1 = { name, site, ... }: {
          deployment.targetHost = "${name}.${site}.example.org";
          deployment.tags = [ "web" site ];
        };
        web2 = {
          deployment = { targetHost = "web2.example.org"; targetPort = 2222; targetUser = "ops"; tags = [ "web" ]; };
        };
        db = { deployment.tags = [ "db" ]; };
        # targetHost null: colmena deploys it only with apply-local.
        laptop = { deployment.targetHost = null; };
      };
      colmenaHive = makeHive self.colmena;
    };
}
