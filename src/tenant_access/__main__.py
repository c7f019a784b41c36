from tenant_access.cli import main

main()
