from .cli import main
from .recipe.run import end_process_group

main()
end_process_group()
