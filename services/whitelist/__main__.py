from services.whitelist.app import main

main()
