# Applied to a flake reference: the small attributes of the fleet the flake
# declares, never a system's store path (nothing is built or forced beyond
# what deploy-rs and colmena themselves read to connect).
ref:
let
  outputs = (builtins.getFlake ref).outputs;
  # deploy-rs merges generic settings profile first, then node, then top
  # level: the first one set wins (sshOpts are appended in that order).
  first = l: let set = builtins.filter (x: x != null) l; in
    if set == [ ] then null else builtins.head set;
  deploy = outputs.deploy or { };
  deployNode = name: node:
    let
      profiles = node.profiles or { };
      system = profiles.system or { };
      setting = key: first [ (system.${key} or null) (node.${key} or null) (deploy.${key} or null) ];
    in {
      hasSystem = profiles ? system;
      hostname = node.hostname or null;
      sshUser = setting "sshUser";
      user = setting "user";
      sshOpts = (system.sshOpts or [ ]) ++ (node.sshOpts or [ ]) ++ (deploy.sshOpts or [ ]);
      profilePath = system.profilePath or null;
    };
  hive = outputs.colmenaHive or null;
  colmenaNode = name: d: {
    inherit (d) targetHost targetUser targetPort tags;
  };
in {
  deployNodes = if deploy ? nodes then builtins.mapAttrs deployNode deploy.nodes else null;
  colmenaSchema = if hive == null then null else hive.__schema or "";
  colmenaNodes =
    if hive == null || !(hive ? deploymentConfig) then null
    else builtins.mapAttrs colmenaNode hive.deploymentConfig;
  rawColmena = outputs ? colmena;
}
