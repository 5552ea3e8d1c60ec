from worker_service.main import main

main()
